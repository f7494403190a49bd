"""Server hooks in a gunicorn-style config file: each one runs at its point, with its objects."""

import json
import os
import signal
import textwrap
import time

from helpers import Client, Server, request, wait_until

HOOKS_CONF = textwrap.dedent('''
    import json, os

    RECORD = os.environ["HOOK_RECORD"]

    def record(name, **data):
        data.update(hook=name, process=os.getpid())
        with open(RECORD, "a") as fh:
            fh.write(json.dumps(data) + "\\n")

    def on_starting(server):
        record("on_starting", server_pid=server.pid, bind=server.cfg.bind)

    def on_reload(server):
        record("on_reload")

    def when_ready(server):
        record("when_ready", server_pid=server.pid)

    def pre_fork(server, worker):
        record("pre_fork", worker_pid=worker.pid, age=worker.age)

    def post_fork(server, worker):
        record("post_fork", worker_pid=worker.pid)

    def post_worker_init(worker):
        record("post_worker_init", worker_pid=worker.pid, has_app=worker.app is not None)

    def worker_int(worker):
        record("worker_int", worker_pid=worker.pid)

    def worker_abort(worker):
        record("worker_abort", worker_pid=worker.pid)

    def pre_request(worker, req):
        record("pre_request", method=req.method, path=req.path, query=req.query,
               version=list(req.version), headers=req.headers)

    def post_request(worker, req, environ, resp):
        record("post_request", path=req.path, status=resp.status, code=resp.status_code,
               sent=resp.sent, remote=environ["REMOTE_ADDR"])

    def child_exit(server, worker):
        record("child_exit", worker_pid=worker.pid)

    def worker_exit(server, worker):
        record("worker_exit", worker_pid=worker.pid)

    def nworkers_changed(server, new_value, old_value):
        record("nworkers_changed", new=new_value, old=old_value)

    def on_exit(server):
        record("on_exit", server_pid=server.pid)
''')


def read_records(path):
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def hooks_seen(path, name):
    return [r for r in read_records(path) if r["hook"] == name]


def test_every_hook_runs_at_its_point(tmp_path):
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text(HOOKS_CONF)
    record = tmp_path / "hooks.jsonl"
    env = {"HOOK_RECORD": str(record)}
    with Server(["-c", str(conf), "-w", "1", "--timeout", "1"], env=env) as srv:
        wait_until(lambda: hooks_seen(record, "post_worker_init"))
        request(srv.port, "GET", "/pid?x=1", headers=[("X-Test", "yes")])
        wait_until(lambda: hooks_seen(record, "post_request"))
        srv.signal(signal.SIGTTIN)
        wait_until(lambda: len(srv.worker_pids()) == 2)
        srv.signal(signal.SIGHUP)
        srv.wait_for_log("Handling signal: HUP")
        wait_until(lambda: hooks_seen(record, "on_reload"))
        wait_until(lambda: srv.log.count("] Ready: ") >= 2, message="reloaded")
        # a worker stuck past --timeout: its watchdog runs worker_abort
        with Client(srv.port, timeout=10) as client:
            client.request("GET", "/spin?5")
            client.closed_by_server(timeout=8)
        aborted = wait_until(lambda: hooks_seen(record, "worker_abort"), timeout=10)[0]
        # INT to a worker: worker_int (not to the aborted one, which may still be exiting)
        victim = wait_until(lambda: [pid for pid in srv.worker_pids()
                                     if pid != aborted["worker_pid"]])[0]
        wait_until(lambda: any(r["worker_pid"] == victim
                               for r in hooks_seen(record, "post_worker_init")))
        os.kill(victim, signal.SIGINT)
        wait_until(lambda: hooks_seen(record, "worker_int"))
        wait_until(lambda: any(r["worker_pid"] == victim == r["process"]
                               for r in hooks_seen(record, "worker_exit")),
                   message="worker_exit on INT")
        time.sleep(0.5)
    records = read_records(record)
    names = [r["hook"] for r in records]
    for hook in ("on_starting", "on_reload", "when_ready", "pre_fork", "post_fork",
                 "post_worker_init", "worker_int", "worker_abort", "pre_request", "post_request",
                 "child_exit", "worker_exit", "nworkers_changed", "on_exit"):
        assert hook in names, (hook, names)
    first = {r["hook"]: r for r in reversed(records)}
    assert names.index("on_starting") < names.index("when_ready") < names.index("pre_fork")
    assert first["on_starting"]["process"] == srv.pid and first["on_starting"]["bind"]
    assert first["pre_fork"]["worker_pid"] is None and first["pre_fork"]["process"] == srv.pid
    assert first["post_fork"]["process"] == first["post_fork"]["worker_pid"] != srv.pid
    assert first["post_worker_init"]["has_app"] is True
    pre = [r for r in records if r["hook"] == "pre_request" and r["path"] == "/pid"][0]
    assert pre["method"] == "GET" and pre["query"] == "x=1" and pre["version"] == [1, 1]
    assert ["X-TEST", "yes"] in pre["headers"]
    post = [r for r in records if r["hook"] == "post_request" and r["path"] == "/pid"][0]
    assert post["status"] == "200 OK" and post["code"] == 200 and post["sent"] > 0
    assert post["remote"] == "127.0.0.1"
    changes = [(r["new"], r["old"]) for r in records if r["hook"] == "nworkers_changed"]
    assert changes[:2] == [(1, None), (2, 1)]
    assert names[-1] == "on_exit"
    exits = [r for r in records if r["hook"] == "worker_exit"]
    assert all(r["process"] == r["worker_pid"] for r in exits)
    assert any(r["hook"] == "child_exit" and r["process"] == srv.pid for r in records)


def test_failing_hooks_are_logged_and_the_server_carries_on(tmp_path):
    conf = tmp_path / "conf.py"
    conf.write_text(textwrap.dedent('''
        def when_ready(server):
            raise RuntimeError("when_ready is broken")

        def pre_request(worker, req):
            raise ValueError("pre_request is broken")

        def post_request(worker, req, environ, resp):
            raise ValueError("post_request is broken")

        def nworkers_changed(server, new_value, old_value):
            raise KeyError("nworkers_changed is broken")
    '''))
    with Server(["-c", str(conf), "-w", "1"]) as srv:
        assert request(srv.port, "GET", "/").body == b"hello"
        srv.signal(signal.SIGTTIN)
        wait_until(lambda: len(srv.worker_pids()) == 2)
        assert request(srv.port, "GET", "/").status == 200
        srv.wait_for_log("The post_request hook failed")
    for name in ("when_ready", "pre_request", "post_request", "nworkers_changed"):
        assert f"The {name} hook failed (the server carries on)" in srv.log
        assert f"{name} is broken" in srv.log
