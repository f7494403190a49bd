"""The supervisor: real processes, real signals, real load; every promise counted in failures."""

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from helpers import APPS, Client, Load, Server, children, request, run_command, wait_until


def worker_set(srv):
    return set(srv.worker_pids())


# -- pre-fork -------------------------------------------------------------------------------

def test_workers_share_the_listener_and_count_is_kept():
    with Server(["-w", "3"]) as srv:
        wait_until(lambda: len(srv.worker_pids()) == 3, message="3 workers")
        seen = set()
        for _ in range(60):
            seen.add(request(srv.port, "GET", "/pid").text)
        assert len(seen) >= 2  # the workers accept from the shared socket


def test_pid_file_of_a_running_server_is_not_taken(tmp_path):
    """A second server given the PID file of one still running stops with one line, before it
    does anything else (here: raise a low open-files limit), and the file still names the
    first. A stale file is replaced: its process gone, another program, or one started after
    the file was written (the PID reused)."""
    pidfile = tmp_path / "gs.pid"
    with Server(["-w", "1", "--pid", str(pidfile)]) as first:
        proc = run_command([sys.executable, "-m", "geventserve", "-b", "127.0.0.1:0", "--pid",
                            str(pidfile), "wsgi_app:app"], timeout=20, cwd=APPS,
                           env=dict(os.environ, PYTHONPATH=APPS),
                           preexec_fn=_limit_open_files(1024, 20000))
        assert proc.returncode == 1, proc.stderr
        assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
        assert f"names geventserve pid {first.pid}, still running" in proc.stderr
        assert pidfile.read_text().strip() == str(first.pid)
        an_hour_ago = time.time() - 3600
        os.utime(pidfile, (an_hour_ago, an_hour_ago))
        with Server(["-w", "1", "--pid", str(pidfile)]) as second:
            assert pidfile.read_text().strip() == str(second.pid)
    gone = subprocess.Popen(["true"])
    gone.wait(10)
    other = subprocess.Popen(["sleep", "30"])  # alive, but not a geventserve
    try:
        for stale in (gone.pid, other.pid):
            pidfile.write_text(f"{stale}\n")
            with Server(["-w", "1", "--pid", str(pidfile)]) as srv:
                assert pidfile.read_text().strip() == str(srv.pid)
    finally:
        other.kill()
        other.wait(10)


def test_web_concurrency_sets_the_default_worker_count():
    with Server([], env={"WEB_CONCURRENCY": "3"}) as srv:
        wait_until(lambda: len(srv.worker_pids()) == 3, message="3 workers")
    with Server(["-w", "2"], env={"WEB_CONCURRENCY": "3"}) as srv:
        wait_until(lambda: len(srv.worker_pids()) == 2, message="-w wins")


def test_pidfile_and_process_titles(tmp_path):
    pidfile = tmp_path / "gs.pid"
    with Server(["-w", "1", "--pid", str(pidfile), "-n", "titled"]) as srv:
        assert pidfile.read_text().strip() == str(srv.pid)
        with open(f"/proc/{srv.pid}/cmdline", "rb") as fh:
            assert fh.read().split(b"\0")[0] == b"geventserve: master [titled]"
        worker = srv.worker_pids()[0]
        with open(f"/proc/{worker}/cmdline", "rb") as fh:
            assert fh.read().split(b"\0")[0] == b"geventserve: worker [titled]"
    assert not pidfile.exists()


def _listening_socket():
    """A TCP socket listening on a free port of 127.0.0.1, and the port."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock, sock.getsockname()[1]


def test_systemd_socket_activation():
    listener, port = _listening_socket()
    fd = listener.fileno()
    env = dict(os.environ, PYTHONPATH=APPS, LISTEN_FDS="1")
    # as systemd does: the socket on fd 3, LISTEN_PID the PID of the process it execs
    launcher = ("import os, sys; os.dup2(int(sys.argv[1]), 3); "
                "os.environ['LISTEN_PID'] = str(os.getpid()); "
                "os.execv(sys.executable, [sys.executable] + sys.argv[2:])")
    proc = subprocess.Popen([sys.executable, "-c", launcher, str(fd), "-m", "geventserve",
                             "-w", "1", "wsgi_app:app"], cwd=APPS, env=env, pass_fds=[fd],
                            stderr=subprocess.PIPE, start_new_session=True)
    listener.close()
    try:
        response = wait_until(lambda: _try_get(port, "/environ"), message="served on fd 3")
        assert response.status == 200
        assert '"LISTEN_FDS"' not in response.text  # not passed on to the app
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def _try_get(port, path):
    try:
        return request(port, "GET", path, timeout=2)
    except OSError:
        return None


# -- liveness -------------------------------------------------------------------------------

def test_killed_worker_is_replaced_and_only_its_requests_fail():
    with Server(["-w", "4"]) as srv:
        wait_until(lambda: len(srv.worker_pids()) == 4)
        load = Load(srv.port, clients=100).start()
        time.sleep(1.0)
        victim = srv.worker_pids()[0]
        before = worker_set(srv)
        killed_at = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        replacement = wait_until(lambda: worker_set(srv) - before, timeout=5, interval=0.01)
        replaced_in = time.monotonic() - killed_at
        time.sleep(1.0)
        load.stop()
    assert replaced_in < 1.0, replaced_in
    assert len(replacement) == 1
    victim_body = str(victim).encode()
    errors = load.failures + load.retries
    assert all(body in (victim_body, None) for body, _ in errors), errors
    assert load.ok > 1000
    assert f"Worker (pid:{victim}) died: signal SIGKILL" in srv.log


@pytest.mark.parametrize("path,how", [("/exit?7", "exit code 7"), ("/segfault", "signal SIGSEGV")])
def test_worker_death_is_described(path, how):
    with Server(["-w", "1"]) as srv:
        first = srv.worker_pids()
        with pytest.raises((OSError, EOFError)):
            request(srv.port, "GET", path)
        wait_until(lambda: srv.worker_pids() and srv.worker_pids() != first)
        srv.wait_for_log(f"died: {how}; starting a new one")
        assert request(srv.port, "GET", "/").status == 200


def test_blocked_worker_is_reported_and_replaced():
    with Server(["-w", "1", "--timeout", "2"]) as srv:
        first = srv.worker_pids()[0]
        with Client(srv.port, timeout=15) as client:
            client.request("GET", "/spin?30")
            started = time.monotonic()
            response = client.read_response()
            assert client.closed_by_server(timeout=15)
        elapsed = time.monotonic() - started
        match = srv.wait_for_log(r"WORKER TIMEOUT \(pid:%d\)" % first)
        assert match
        wait_until(lambda: [pid for pid in srv.worker_pids() if pid != first])
        assert request(srv.port, "GET", "/").status == 200
        srv.wait_for_log(r"Worker exiting \(pid: %d\)" % first)
    report = srv.log[srv.log.index("WORKER TIMEOUT"):]
    assert "serving GET /spin?30" in report
    assert "while time.time() < end" in report  # a line of the busy loop
    # the request is interrupted, the worker replaced gracefully (its exit is no failure)
    assert response.status == 500 and response.header("connection") == "close"
    assert "GET /spin?30: interrupted after blocking the event loop" in srv.log
    assert f"Worker (pid:{first}) interrupted a request that blocked its event loop" in srv.log
    assert "stopped by its watchdog" not in srv.log
    assert 1.5 < elapsed < 5, elapsed


def test_block_that_cannot_be_interrupted_ends_the_worker():
    with Server(["-w", "1", "--timeout", "2"]) as srv:
        first = srv.worker_pids()[0]
        with Client(srv.port, timeout=15) as client:
            client.request("GET", "/c-sleep?30")
            assert client.closed_by_server(timeout=15)
        wait_until(lambda: [pid for pid in srv.worker_pids() if pid != first])
        srv.wait_for_log("stopped by its watchdog")
        assert request(srv.port, "GET", "/").status == 200
    assert "serving GET /c-sleep?30" in srv.log
    assert "could not be interrupted" in srv.log


def test_blocked_request_whose_response_started_is_closed():
    with Server(["-w", "1", "--timeout", "2"]) as srv:
        with Client(srv.port, timeout=15) as client:
            client.request("GET", "/spin-started?30")
            assert client.closed_by_server(timeout=15)  # the chunked body never ends
            assert client.buffer.startswith(b"HTTP/1.1 200 OK")
            assert b"started," in client.buffer and not client.buffer.endswith(b"0\r\n\r\n")
        srv.wait_for_log("asking to be replaced")
        assert request(srv.port, "GET", "/").status == 200


def test_blocked_sync_worker_is_reported_too():
    with Server(["-k", "sync", "-w", "1", "--timeout", "1"]) as srv:
        with Client(srv.port, timeout=15) as client:
            client.request("GET", "/spin?30")
            assert client.closed_by_server(timeout=15)
        srv.wait_for_log("WORKER TIMEOUT")
        assert "serving GET /spin?30" in srv.log


def test_orphaned_workers_stop():
    with Server(["-w", "2"]) as srv:
        workers = srv.worker_pids()
        os.kill(srv.pid, signal.SIGKILL)
        wait_until(lambda: not any(os.path.exists(f"/proc/{pid}") and _alive(pid)
                                   for pid in workers), timeout=10, message="workers gone")


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


# -- signals --------------------------------------------------------------------------------

def _new_connections(port, seconds, pause):
    """Open a connection and ask for /pid, again and again for ``seconds``: each one's status,
    "refused", or the error that ended it."""
    outcomes = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with Client(port, timeout=5) as client:
                client.request("GET", "/pid")
                outcomes.append(client.read_response().status)
        except ConnectionRefusedError:
            outcomes.append("refused")
        except (OSError, EOFError) as exc:
            outcomes.append(repr(exc))
        time.sleep(pause)
    return outcomes


def _term_while_serving(srv, path, after, seconds, pause):
    """A request for ``path`` under way, TERM ``after`` seconds later, then new connections
    (_new_connections) while the server stops, which it must do with status 0: the
    request's response and the new connections' outcomes."""
    result = {}

    def slow():
        result["response"] = request(srv.port, "GET", path, timeout=10)

    thread = threading.Thread(target=slow)
    thread.start()
    time.sleep(after)
    srv.signal(signal.SIGTERM)
    outcomes = _new_connections(srv.port, seconds, pause)
    thread.join(10)
    assert srv.wait(15) == 0
    return result.get("response"), outcomes


def test_term_lets_the_request_finish_then_exits_0():
    with Server(["-w", "2"]) as srv:
        response, outcomes = _term_while_serving(srv, "/sleep?2", 0.5, seconds=3, pause=0.02)
    assert response.status == 200 and response.body == b"slept"
    assert all(o in (200, "refused") for o in outcomes), outcomes
    assert "refused" in outcomes


def test_term_closes_idle_keepalive_connections_promptly():
    with Server(["-w", "1"]) as srv, Client(srv.port) as idle:
        idle.request("GET", "/")
        assert idle.read_response().status == 200
        srv.signal(signal.SIGTERM)
        started = time.monotonic()
        assert idle.closed_by_server(timeout=5)
        assert time.monotonic() - started < 2.5
        assert srv.wait(10) == 0


def test_request_already_on_an_idle_connection_is_answered_after_term():
    """A proxy may pick an idle pooled connection just as the worker stops: that request is
    answered (with Connection: close), not reset - a proxy would not retry a POST."""
    with Server(["-w", "1"]) as srv, Client(srv.port) as pooled:
        pooled.request("GET", "/")
        assert pooled.read_response().status == 200
        srv.signal(signal.SIGTERM)
        srv.wait_for_log("Handling signal: TERM")
        time.sleep(0.7)  # the worker is stopping; the connection is idle in its pool
        pooled.request("POST", "/echo", body=b"not lost")
        response = pooled.read_response()
        assert response.body == b"not lost"
        assert response.header("connection") == "close"
        assert srv.wait(10) == 0


def test_term_answers_busy_keepalive_connection_with_close():
    with Server(["-w", "1"]) as srv, Client(srv.port, timeout=10) as client:
        client.request("GET", "/sleep?1")
        time.sleep(0.3)
        srv.signal(signal.SIGTERM)
        response = client.read_response()
        assert response.body == b"slept"
        assert response.header("connection") == "close"
        assert client.closed_by_server()


def test_graceful_timeout_cuts_and_names_the_requests():
    with Server(["-w", "1", "--graceful-timeout", "1"]) as srv:
        client = Client(srv.port, timeout=10)
        client.request("GET", "/sleep?5")
        time.sleep(0.3)
        srv.signal(signal.SIGTERM)
        assert srv.wait(10) == 0
        client.close()
    assert "cutting GET /sleep?5" in srv.log


def test_int_is_a_fast_stop():
    with Server(["-w", "2"]) as srv:
        client = Client(srv.port, timeout=10)
        client.request("GET", "/sleep?5")
        time.sleep(0.3)
        started = time.monotonic()
        srv.signal(signal.SIGINT)
        srv.wait(10)
        assert time.monotonic() - started < 3
        assert client.closed_by_server(timeout=5)
        client.close()


@pytest.mark.parametrize("worker_class,sig", [("gevent", signal.SIGINT), ("sync", signal.SIGQUIT)],
                         ids=["gevent-INT", "sync-QUIT"])
def test_int_or_quit_during_a_graceful_stop_makes_it_fast(worker_class, sig):
    """TERM while a 15 s request is served, then INT (or QUIT) a second later: the graceful
    stop turns into a fast one at once, as gunicorn's does, instead of waiting for the
    request."""
    with Server(["-k", worker_class, "-w", "1"]) as srv:
        client = Client(srv.port, timeout=30)
        client.request("GET", "/sleep?15")
        time.sleep(0.3)
        srv.signal(signal.SIGTERM)
        srv.wait_for_log("Handling signal: TERM")
        time.sleep(1.0)
        assert srv.proc.poll() is None  # still draining the request
        asked = time.monotonic()
        srv.signal(sig)
        assert srv.wait(20) == 0  # the status of a fast stop
        stopped_in = time.monotonic() - asked
        assert client.closed_by_server(timeout=5)
        client.close()
    assert stopped_in < 4, stopped_in
    assert f"Handling signal: {signal.Signals(sig).name} (fast stop)" in srv.log


def test_ttin_ttou_change_the_worker_count():
    with Server(["-w", "2"]) as srv:
        wait_until(lambda: len(srv.worker_pids()) == 2)
        srv.signal(signal.SIGTTIN)
        wait_until(lambda: len(srv.worker_pids()) == 3, message="3 after TTIN")
        srv.signal(signal.SIGTTIN)
        wait_until(lambda: len(srv.worker_pids()) == 4, message="4 after TTIN")
        for expected in (3, 2, 1, 1):
            srv.signal(signal.SIGTTOU)
            wait_until(lambda e=expected: len(srv.worker_pids()) == e, message=f"{expected}")
        time.sleep(0.5)
        assert len(srv.worker_pids()) == 1  # never below one
        assert request(srv.port, "GET", "/").status == 200


def test_usr1_reopens_log_files(tmp_path):
    access = tmp_path / "access.log"
    with Server(["-w", "1", "--access-logfile", str(access)]) as srv:
        request(srv.port, "GET", "/first")
        wait_until(lambda: "/first" in access.read_text())
        os.rename(access, tmp_path / "access.log.1")
        srv.signal(signal.SIGUSR1)
        srv.wait_for_log("reopening the log files")

        def reopened():
            request(srv.port, "GET", "/second")
            return access.exists() and "/second" in access.read_text()

        wait_until(reopened, message="access log reopened")
    assert "/second" not in (tmp_path / "access.log.1").read_text()


def test_usr1_while_a_worker_boots_reaches_it(tmp_path):
    """logrotate's USR1 while a worker imports the app: the worker reopens once it serves,
    instead of writing to the moved file for the rest of its life."""
    (tmp_path / "slow_app.py").write_text(
        "import time\n"
        "time.sleep(1.5)\n"
        "def app(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return [b'up']\n")
    access = tmp_path / "access.log"
    args = ["-w", "1", "--chdir", str(tmp_path), "--access-logfile", str(access)]
    with Server(args, app="slow_app:app", wait=False) as srv:
        srv.wait_for_log(r"Booting worker with pid")
        os.rename(access, tmp_path / "access.log.1")
        srv.signal(signal.SIGUSR1)
        srv.wait_for_log(r"\] Ready: 1 worker", timeout=15)
        srv.wait_listening()
        assert request(srv.port, "GET", "/after-rotation").body == b"up"
        wait_until(lambda: access.exists() and "/after-rotation" in access.read_text(),
                   message="the booting worker reopened the access log")
    assert "/after-rotation" not in (tmp_path / "access.log.1").read_text()


def test_failed_reopen_keeps_the_old_log_file(tmp_path):
    """USR1 while the log's directory is gone: the log goes on in the file it had."""
    logs = tmp_path / "logs"
    logs.mkdir()
    with Server(["-w", "1", "--access-logfile", str(logs / "access.log")]) as srv:
        request(srv.port, "GET", "/first")
        moved = tmp_path / "moved"
        wait_until(lambda: "/first" in (logs / "access.log").read_text())
        os.rename(logs, moved)
        srv.signal(signal.SIGUSR1)
        wait_until(lambda: srv.log.count("cannot reopen") >= 2, message="reopen failed")

        def still_logged():
            request(srv.port, "GET", "/second")
            return "/second" in (moved / "access.log").read_text()

        wait_until(still_logged, message="access log still written")


def test_hup_reloads_new_code_without_failures(tmp_path):
    app = tmp_path / "version_app.py"
    code = ("import os\n"
            "VERSION = {v!r}\n"
            "def app(environ, start_response):\n"
            "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
            "    return [VERSION.encode()]\n")
    app.write_text(code.format(v="v1"))
    with Server(["-w", "2", "--chdir", str(tmp_path)], app="version_app:app",
                env={"PYTHONDONTWRITEBYTECODE": "1"}) as srv:
        load = Load(srv.port, clients=200, path="/").start()
        time.sleep(1.5)
        app.write_text(code.format(v="v2-reloaded"))
        srv.signal(signal.SIGHUP)
        wait_until(lambda: srv.log.count("] Ready: 2 worker") >= 2, message="reloaded")
        time.sleep(2.0)  # keep the load on the new workers for a while
        load.stop()
        assert request(srv.port, "GET", "/").body == b"v2-reloaded"
    assert load.failures == [], load.failures[:5]
    assert load.bodies.get(b"v1", 0) > 100 and load.bodies.get(b"v2-reloaded", 0) > 100


def test_hup_with_broken_code_keeps_serving(tmp_path):
    app = tmp_path / "fragile_app.py"
    app.write_text("def app(environ, start_response):\n"
                   "    start_response('200 OK', [])\n"
                   "    return [b'good']\n")
    with Server(["-w", "2", "--chdir", str(tmp_path)], app="fragile_app:app",
                env={"PYTHONDONTWRITEBYTECODE": "1"}) as srv:
        before = worker_set(srv)
        app.write_text("import missing_dependency_xyz\n")
        srv.signal(signal.SIGHUP)
        srv.wait_for_log("Reload failed: importing 'fragile_app' failed")
        time.sleep(0.5)
        assert worker_set(srv) == before
        assert request(srv.port, "GET", "/").body == b"good"
        assert srv.proc.poll() is None


def test_max_requests_recycles_without_failures():
    with Server(["-w", "2", "--max-requests", "50", "--max-requests-jitter", "10"]) as srv:
        initial = worker_set(srv)
        load = Load(srv.port, clients=20).start()
        seen = set()

        def recycled_a_few():
            seen.update(srv.worker_pids())
            return len(seen - initial) >= 3

        wait_until(recycled_a_few, timeout=30, message="workers recycled")
        load.stop()
    assert load.failures == [], load.failures[:5]
    assert "reached" in srv.log and "asking to be replaced" in srv.log


def test_usr2_then_term_old_master_under_load():
    with Server(["-w", "2"]) as srv:
        load = Load(srv.port, clients=50).start()
        time.sleep(1.0)
        old_workers = worker_set(srv)
        srv.signal(signal.SIGUSR2)
        new_master = wait_until(lambda: [p for p in children(srv.pid) if p not in old_workers],
                                message="new master")[0]
        wait_until(lambda: len(children(new_master)) == 2, message="new workers")
        srv.wait_for_log(r"\[%d\] \[INFO\] Ready: 2 worker" % new_master)
        srv.signal(signal.SIGTERM)
        assert srv.wait(15) == 0
        time.sleep(1.0)
        new_workers = set(children(new_master))
        load.stop()
        try:
            assert request(srv.port, "GET", "/pid").text in {str(p) for p in new_workers}
        finally:
            os.kill(new_master, signal.SIGTERM)
            wait_until(lambda: not _alive(new_master), timeout=15)
    assert load.failures == [], load.failures[:5]
    served_by_new = sum(n for body, n in load.bodies.items() if int(body) in new_workers)
    assert served_by_new > 100


def _read(path):
    """The stripped text of a file that may be renamed away at any moment ("" then)."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return ""


def test_usr2_moves_the_pid_file(tmp_path):
    """The upgrade dance: after USR2 the PID file names the new supervisor and <file>.oldbin
    the old one; TERM to the old one removes only .oldbin."""
    pidfile = tmp_path / "gs.pid"
    oldbin = tmp_path / "gs.pid.oldbin"
    with Server(["-w", "1", "--pid", str(pidfile)]) as srv:
        srv.signal(signal.SIGUSR2)
        new_master = int(wait_until(
            lambda: _read(pidfile) not in ("", str(srv.pid)) and _read(pidfile),
            message="the new supervisor's PID file"))
        try:
            assert oldbin.read_text().strip() == str(srv.pid)
            srv.wait_for_log(r"\[%d\] \[INFO\] Ready: 1 worker" % new_master)
            srv.signal(signal.SIGTERM)
            assert srv.wait(15) == 0
            assert not oldbin.exists()
            assert pidfile.read_text().strip() == str(new_master)
            assert request(srv.port, "GET", "/").status == 200
        finally:
            os.kill(new_master, signal.SIGTERM)
            wait_until(lambda: not _alive(new_master), timeout=15)
    assert not pidfile.exists()


def test_fair_spread_over_workers():
    with Server(["-w", "4", "--keep-alive", "0"]) as srv:
        wait_until(lambda: len(srv.worker_pids()) == 4)
        load = Load(srv.port, clients=40).start()
        time.sleep(3.0)
        load.stop()
    counts = sorted(load.bodies.values())
    total = sum(counts)
    assert len(counts) == 4, load.bodies
    assert max(counts) <= 2 * total / 4, counts
    assert load.failures == []


def test_preload_with_gevent_patches_before_the_app(tmp_path):
    with Server(["-w", "1"], app="wsgi_app:app") as upstream, \
            Server(["-w", "1", "--preload", "-k", "gevent"], app="preload_app:app",
                   env={"UPSTREAM": f"http://127.0.0.1:{upstream.port}"}) as srv:
        clients = [Client(srv.port, timeout=10) for _ in range(10)]
        started = time.monotonic()
        for client in clients:
            client.request("GET", "/call-upstream")
        bodies = [client.read_response().body for client in clients]
        elapsed = time.monotonic() - started
        for client in clients:
            client.close()
    assert bodies == [b"slept"] * 10
    assert elapsed < 2.5, elapsed  # 10 x 0.5 s upstream calls, concurrently
    assert "MonkeyPatchWarning" not in srv.log
    assert "not patched" not in srv.log


def test_signals_during_a_slow_preload(tmp_path):
    """USR1 (logrotate) and HUP while --preload imports a slow app are queued, not fatal;
    TERM then ends the start cleanly, the pidfile removed."""
    (tmp_path / "slow_app.py").write_text(
        "import time\n"
        "time.sleep(2)\n"
        "def app(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return [b'up']\n")
    pidfile = tmp_path / "server.pid"
    args = ["-w", "1", "--preload", "--chdir", str(tmp_path), "--pid", str(pidfile)]
    with Server(args, app="slow_app:app", wait=False) as srv:
        wait_until(pidfile.exists, message="pidfile written")
        srv.signal(signal.SIGUSR1)
        srv.signal(signal.SIGHUP)
        srv.wait_listening()
        srv.wait_for_log(r"\] Ready: 1 worker", timeout=15)
        assert request(srv.port, "GET", "/").body == b"up"
    with Server(args, app="slow_app:app", wait=False) as srv:
        wait_until(pidfile.exists, message="pidfile written")
        srv.signal(signal.SIGTERM)
        assert srv.wait(10) == 0
    assert not pidfile.exists()
    assert "Traceback" not in srv.log


def test_reuse_port_lets_two_servers_share_an_address():
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    address = [f"127.0.0.1:{port}"]
    with Server(["-w", "1", "--reuse-port"], bind=address) as first, \
            Server(["-w", "1", "--reuse-port"], bind=address) as second:
        assert first.port == second.port == port
        assert request(port, "GET", "/").status == 200
        # without the option the address is taken
        proc = run_command([sys.executable, "-m", "geventserve", "-b", f"127.0.0.1:{port}",
                            "wsgi_app:app"], timeout=20, cwd=APPS,
                           env=dict(os.environ, PYTHONPATH=APPS))
        assert proc.returncode == 1 and "address already in use" in proc.stderr


def _limit_open_files(soft, hard):
    def apply():
        import resource
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return apply


def test_open_files_limit_is_raised_for_worker_connections():
    with Server(["-w", "1", "--worker-connections", "3000"],
                preexec_fn=_limit_open_files(512, 20000)) as srv:
        srv.wait_for_log("Raised the open-files limit from 512 to 6128")
        worker = srv.worker_pids()[0]
        with open(f"/proc/{worker}/limits") as fh:
            line = next(line for line in fh if line.startswith("Max open files"))
        assert line.split()[3] == "6128"


def test_open_files_limit_too_low_is_said():
    with Server(["-w", "1", "--worker-connections", "3000"],
                preexec_fn=_limit_open_files(512, 1024)) as srv:
        srv.wait_for_log("The open-files limit is 1024, below the 6128")
        assert request(srv.port, "GET", "/").status == 200


def test_hup_with_a_changed_bind(tmp_path):
    first, second = (_free_port() for _ in range(2))
    conf = tmp_path / "conf.py"
    conf.write_text(f"bind = ['127.0.0.1:{first}']\n")
    with Server(["-c", str(conf), "-w", "1"], bind=[]) as srv:
        assert request(first, "GET", "/").status == 200
        conf.write_text(f"bind = ['127.0.0.1:{second}']\n")
        srv.signal(signal.SIGHUP)
        wait_until(lambda: _try_get(second, "/"), message="served on the new address")
        # the old address is closed once its workers are gone: refused, not left hanging
        wait_until(lambda: _refused(first), message="old address closed")
        assert srv.proc.poll() is None


def test_failed_reload_after_a_reload_still_closes_the_first_address(tmp_path):
    """HUP to a new address, and a second HUP (code that does not import) while the first new
    workers still start: the second is undone, and the very first address is still closed,
    its unix socket file removed, once its workers are gone."""
    first = tmp_path / "first.sock"
    second, third = _free_port(), _free_port()
    conf = tmp_path / "conf.py"
    conf.write_text(f"bind = ['unix:{first}']\n")
    app = tmp_path / "reload_app.py"
    app.write_text("def app(environ, start_response):\n"
                   "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
                   "    return [b'ok']\n")
    with Server(["-c", str(conf), "-w", "1", "--chdir", str(tmp_path)], app="reload_app:app",
                bind=[], wait=False, env={"PYTHONDONTWRITEBYTECODE": "1"}) as srv:
        srv.wait_for_log(r"Ready: 1 worker", timeout=15)
        app.write_text("import time\nopen('slow-import', 'w').close()\ntime.sleep(2)\n"
                       + app.read_text())
        conf.write_text(f"bind = ['127.0.0.1:{second}']\n")
        srv.signal(signal.SIGHUP)
        srv.wait_for_log(rf"Listening at: http://127.0.0.1:{second}")
        wait_until((tmp_path / "slow-import").exists, message="the slow code read")
        app.write_text("raise RuntimeError('broken')\n")
        conf.write_text(f"bind = ['127.0.0.1:{third}']\n")
        srv.signal(signal.SIGHUP)
        srv.wait_for_log("Reload failed")
        wait_until(lambda: _try_get(second, "/"), message="served on the second address")
        wait_until(lambda: not first.exists(), message="first address closed, file removed")
        assert _refused(third)
        assert srv.proc.poll() is None


def test_hup_that_adds_a_bind_keeps_an_fd_listener(tmp_path):
    """-b fd://3 and a HUP that adds an address: the inherited socket is kept as it is, not
    wrapped a second time (the first wrapper, dropped, would close it under the server)."""
    inherited, port = _listening_socket()
    extra = _free_port()
    conf = tmp_path / "conf.py"
    conf.write_text("bind = ['fd://3']\n")
    launcher = ("import os, sys; os.dup2(int(sys.argv[1]), 3); "
                "os.execv(sys.executable, [sys.executable] + sys.argv[2:])")
    proc = subprocess.Popen([sys.executable, "-c", launcher, str(inherited.fileno()), "-m",
                             "geventserve", "-c", str(conf), "-w", "1", "wsgi_app:app"],
                            cwd=APPS, env=dict(os.environ, PYTHONPATH=APPS),
                            pass_fds=[inherited.fileno()], stderr=subprocess.DEVNULL,
                            start_new_session=True)
    inherited.close()
    try:
        wait_until(lambda: _try_get(port, "/"), message="served on fd://3")
        first_worker = children(proc.pid)[0]
        conf.write_text(f"bind = ['fd://3', '127.0.0.1:{extra}']\n")
        os.kill(proc.pid, signal.SIGHUP)
        wait_until(lambda: _try_get(extra, "/"), message="served on the added address")
        wait_until(lambda: first_worker not in children(proc.pid), message="old worker gone")
        # A worker forked from now on gets the supervisor's fd 3: it must still be the socket.
        os.kill(children(proc.pid)[0], signal.SIGKILL)
        wait_until(lambda: len(children(proc.pid)) == 1 and _try_get(port, "/pid") is not None
                   and _try_get(port, "/pid").text == str(children(proc.pid)[0]),
                   message="the replacement serves fd://3")
        assert _try_get(extra, "/").status == 200
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _refused(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return False
    except ConnectionRefusedError:
        return True


def test_boot_failure_after_start_keeps_serving(tmp_path):
    flag = tmp_path / "down"
    with Server(["-w", "1"], app="flaky_app:app", env={"FLAKY_FLAG": str(flag)}) as srv:
        first = request(srv.port, "GET", "/").text
        flag.touch()  # the database goes down: new workers cannot import the app
        srv.signal(signal.SIGTTIN)
        srv.wait_for_log(r"A new worker failed to start: importing 'flaky_app' failed: "
                         r"RuntimeError: database down .*; trying again in")
        for _ in range(10):
            assert request(srv.port, "GET", "/").text == first  # still served
        flag.unlink()  # back up: the retry succeeds
        wait_until(lambda: len(srv.worker_pids()) == 2, timeout=15, message="second worker")
        assert srv.proc.poll() is None
    assert srv.log.count("failed to start") < 6  # retried more and more slowly, not in a loop


def test_sync_worker_stops_accepting_on_term():
    """After TERM a sync worker serves only what was already queued: a new connection is
    refused or answered, never accepted and then cut at the graceful timeout."""
    with Server(["-k", "sync", "-w", "1", "--graceful-timeout", "3"]) as srv:
        _, outcomes = _term_while_serving(srv, "/sleep?1", 0.3, seconds=2.5, pause=0.05)
    assert all(o in (200, "refused") for o in outcomes), outcomes


def _slow_requests(port, count, delay):
    """``count`` requests to /slow-pid, each on its own connection, all connected here (so all
    queued before this returns), then sent at once: the threads, and the pids (or errors)
    that answered, in the order of connection."""
    clients = [Client(port, timeout=20) for _ in range(count)]
    answers = [None] * count

    def one(i):
        try:
            with clients[i] as client:
                client.request("GET", f"/slow-pid?{delay}")
                answers[i] = client.read_response().body.decode()
        except Exception as exc:  # the outcome, compared below
            answers[i] = repr(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    return threads, answers


def test_retiring_worker_leaves_the_queue_to_the_others():
    """TTOU (likewise HUP, --max-requests): the worker that retires finishes what it serves and
    leaves the connections still queued to the workers that stay, instead of taking them all
    and serving them one by one, old code, against its graceful timeout."""
    with Server(["-k", "sync", "-w", "2"]) as srv:
        before = worker_set(srv)
        threads, answers = _slow_requests(srv.port, 5, 1.0)
        time.sleep(0.2)  # two served, three queued
        srv.signal(signal.SIGTTOU)
        for thread in threads:
            thread.join(30)
        wait_until(lambda: len(worker_set(srv)) == 1, message="one worker left")
        (retired,) = before - worker_set(srv)
    assert all(a in {str(p) for p in before} for a in answers), answers
    assert answers.count(str(retired)) == 1, answers  # only the request it had in hand


def test_term_serves_the_connections_already_queued():
    """A full stop: the connections queued on the listeners are taken and answered before
    the listeners close (closing would reset them)."""
    with Server(["-k", "sync", "-w", "1"]) as srv:
        threads, answers = _slow_requests(srv.port, 4, 0.3)
        time.sleep(0.1)  # one served, three queued
        srv.signal(signal.SIGTERM)
        for thread in threads:
            thread.join(30)
        assert srv.wait(15) == 0
    assert len(set(answers)) == 1 and answers[0].isdigit(), answers


def test_usr1_reopens_captured_output(tmp_path):
    log, port = tmp_path / "error.log", _free_port()
    with Server(["-w", "1", "--error-logfile", str(log), "--capture-output"],
                app="print_app:app", bind=[f"127.0.0.1:{port}"], wait=False) as srv:
        wait_until(lambda: log.exists() and "Ready:" in log.read_text(), timeout=15)
        os.rename(log, tmp_path / "error.log.1")
        srv.signal(signal.SIGUSR1)

        def printed_into_new_file():
            request(port, "GET", "/")
            return log.exists() and "printed by the app" in log.read_text()

        wait_until(printed_into_new_file, message="the app's print in the reopened file")
    assert srv.proc.returncode is not None


def test_usr2_keeps_systemd_sockets(tmp_path):
    listeners, ports = zip(*(_listening_socket() for _ in range(2)))
    fds = [s.fileno() for s in listeners]
    env = dict(os.environ, PYTHONPATH=APPS, LISTEN_FDS="2")
    # Through fds 100 and 101 first: one of the sockets may itself be fd 3 or 4.
    launcher = ("import os, sys; os.dup2(int(sys.argv[1]), 100); os.dup2(int(sys.argv[2]), 101); "
                "os.dup2(100, 3); os.dup2(101, 4); os.close(100); os.close(101); "
                "os.environ['LISTEN_PID'] = str(os.getpid()); "
                "os.execv(sys.executable, [sys.executable] + sys.argv[3:])")
    log = open(tmp_path / "server.log", "wb")
    proc = subprocess.Popen([sys.executable, "-c", launcher, str(fds[0]), str(fds[1]), "-m",
                             "geventserve", "-w", "1", "wsgi_app:app"], cwd=APPS, env=env,
                            pass_fds=fds, stderr=log, start_new_session=True)
    log.close()
    for sock in listeners:
        sock.close()
    try:
        for port in ports:
            try:
                wait_until(lambda p=port: _try_get(p, "/"), timeout=20, message=f"port {port}")
            except AssertionError as exc:
                log_text = (tmp_path / "server.log").read_text()[-2000:]
                raise AssertionError(f"{exc}; the server's log:\n{log_text}") from None
        os.kill(proc.pid, signal.SIGUSR2)
        new_master = wait_until(lambda: [p for p in children(proc.pid)
                                         if children(p)], message="new supervisor")[0]
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(15) == 0
        for port in ports:  # both still served, by the new supervisor's worker
            assert wait_until(lambda p=port: _try_get(p, "/pid"), timeout=10).text == \
                str(children(new_master)[0])
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)
