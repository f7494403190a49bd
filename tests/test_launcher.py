"""The launcher: addresses, app specs, and one clear line for every start-up mistake."""

import os
import socket
import subprocess
import sys
import time

import pytest

from helpers import APPS, Client, Server, request, run_command

GEVENTSERVE = [sys.executable, "-m", "geventserve"]


def run_cli(*args, timeout=20, cwd=APPS, env=None):
    full_env = dict(os.environ, PYTHONPATH=APPS)
    full_env.pop("GEVENTSERVE_CMD_ARGS", None)
    if env:
        full_env.update(env)
    started = time.monotonic()
    proc = run_command(GEVENTSERVE + list(args), timeout=timeout, cwd=cwd, env=full_env)
    proc.elapsed = time.monotonic() - started
    return proc


def error_lines(stderr):
    return [line for line in stderr.splitlines() if "[ERROR]" in line or "error:" in line]


FAILURES = {
    "bad spec": ("wsgi_app:create(", 1, "is not a name or a call"),
    "file name instead of module": ("wsgi_app.py", 1, "give the module name"),
    "bad module name": ("my-app:app", 1, "is not a module name"),
    "missing module": ("nosuchmodule:app", 4, "no module named 'nosuchmodule'"),
    "missing attribute": ("wsgi_app:nosuch", 4, "has no attribute 'nosuch'"),
    "not callable": ("wsgi_app:CLOSED", 4, "it is a dict, not a WSGI callable"),
    "factory fails": ("broken_apps:failing_factory()", 4, "calling failing_factory() failed: "
                                                          "RuntimeError: no database"),
    "factory not called": ("broken_apps:create_app", 4, "looks like an application factory"),
    "import error inside the app": ("broken_apps_import:app", 4,
                                    "importing 'broken_apps_import' failed: ModuleNotFoundError: "
                                    "No module named 'not_installed_dependency'"),
    "syntax error in the app": ("broken_apps_syntax:app", 4, "SyntaxError"),
    "bare module without app": ("broken_apps_empty", 4, "neither 'application' nor 'app'"),
    "factory with non-literal argument": ("broken_apps:create_app(os)", 1, "must be literals"),
}


@pytest.mark.parametrize("name", sorted(FAILURES))
@pytest.mark.parametrize("worker_class", ["gevent", "sync"])
def test_app_load_failure_is_one_clear_line(name, worker_class):
    spec, code, message = FAILURES[name]
    proc = run_cli("-b", "127.0.0.1:0", "-w", "2", "-k", worker_class, spec)
    assert proc.returncode == code, proc.stderr
    errors = error_lines(proc.stderr)
    assert len(errors) == 1, proc.stderr
    assert message in errors[0]
    assert spec.split(":")[0].split("(")[0] in errors[0]  # names what was tried
    assert "Traceback" not in proc.stderr
    assert proc.elapsed < 5


def test_traceback_only_with_debug_log_level():
    proc = run_cli("-b", "127.0.0.1:0", "--log-level", "debug", "broken_apps_import:app")
    assert proc.returncode == 4
    assert "Traceback" in proc.stderr
    assert "not_installed_dependency" in proc.stderr


def test_port_in_use():
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        proc = run_cli("-b", f"127.0.0.1:{port}", "wsgi_app:app")
    finally:
        holder.close()
    assert proc.returncode == 1
    errors = error_lines(proc.stderr)
    assert len(errors) == 1 and f"127.0.0.1:{port}" in errors[0]
    assert "address already in use" in errors[0]
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("address,message", [
    ("nonsense:99999", "the port must be a number from 0 to 65535"),
    ("::1:80", "write IPv6 addresses in brackets"),
    ("[::1:80", "closing bracket"),
    ("unix:", "needs a path"),
    ("fd://x", "fd://N"),
    ("a b:80", "is not a host name"),
])
def test_bad_address(address, message):
    proc = run_cli("-b", address, "wsgi_app:app")
    assert proc.returncode == 2 or proc.returncode == 1
    errors = error_lines(proc.stderr)
    assert len(errors) == 1 and message in errors[0], proc.stderr


def test_unknown_flag_is_one_line():
    proc = run_cli("--no-such-flag", "wsgi_app:app")
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "--no-such-flag" in proc.stderr


def test_missing_app_argument():
    proc = run_cli("-b", "127.0.0.1:0")
    assert proc.returncode == 2
    assert "no application given" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("worker_class", ["nope", "foo.bar.Baz"])
def test_unknown_worker_class(worker_class):
    proc = run_cli("-b", "127.0.0.1:0", "-k", worker_class, "wsgi_app:app")
    assert proc.returncode != 0
    errors = error_lines(proc.stderr)
    assert len(errors) == 1, proc.stderr
    assert "gevent" in errors[0] or "foo.bar" in errors[0]


def test_version():
    proc = run_cli("--version")
    assert proc.returncode == 0 and proc.stdout.startswith("geventserve ")


def test_console_script_and_module_agree():
    script = os.path.join(os.path.dirname(sys.executable), "geventserve")
    proc = run_command([script, "--version"], timeout=20)
    assert proc.returncode == 0
    assert proc.stdout == run_cli("--version").stdout


# -- app specs that work ------------------------------------------------------------------

@pytest.mark.parametrize("spec,body", [
    ("wsgi_app", b"hello"),  # bare module: 'application' first
    ("broken_apps_only_app", b"from app"),  # bare module: falls back to 'app'
    ("wsgi_app:application", b"hello"),
    ("broken_apps:create_app()", b"factory default"),
    ("broken_apps:create_app('custom', greeting=\"hi\")", b"hi custom"),
    ("broken_apps:holder.app", b"from holder"),
    ("pkg.sub.mod:app", b"from a package"),
])
def test_app_specs(spec, body):
    with Server(["-w", "1"], app=spec) as srv:
        assert request(srv.port, "GET", "/").body == body


def test_chdir_and_pythonpath(tmp_path):
    (tmp_path / "elsewhere_app.py").write_text(
        "def app(environ, start_response):\n"
        "    start_response('200 OK', [])\n"
        "    return [b'from elsewhere']\n")
    with Server(["-w", "1", "--chdir", str(tmp_path)], app="elsewhere_app:app", cwd="/"):
        pass
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "libapp.py").write_text((tmp_path / "elsewhere_app.py").read_text())
    with Server(["-w", "1", "--pythonpath", str(lib)], app="libapp:app", cwd="/") as srv:
        assert request(srv.port, "GET", "/").body == b"from elsewhere"


# -- addresses ----------------------------------------------------------------------------

def test_ipv6_and_several_binds():
    with Server(["-w", "1"], bind=["127.0.0.1:0", "[::1]:0"]) as srv:
        assert len(srv.addresses) == 2
        v6 = [a for a in srv.addresses if "[::1]" in a][0]
        port6 = int(v6.rsplit(":", 1)[1])
        with Client(port6, host="::1") as client:
            client.request("GET", "/environ")
            assert '"REMOTE_ADDR": "::1"' in client.read_response().text


def test_unix_socket(tmp_path):
    path = str(tmp_path / "gs.sock")
    with Server(["-w", "1"], bind=[f"unix:{path}"], ready_path="") as srv:
        srv.wait_for_log("Listening at: unix:")
        deadline = time.monotonic() + 10
        while True:
            try:
                with Client(unix=path) as client:
                    client.request("GET", "/")
                    assert client.read_response().body == b"hello"
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
    assert not os.path.exists(path), "the socket file is removed on exit"


def test_stale_unix_socket_is_replaced(tmp_path):
    path = str(tmp_path / "stale.sock")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)
    stale.close()  # the file stays, nobody listens
    with Server(["-w", "1"], bind=[f"unix:{path}"], ready_path="") as srv:
        srv.wait_for_log("Listening at: unix:")


def test_inherited_fd():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    fd = listener.fileno()
    os.set_inheritable(fd, True)
    cmd = GEVENTSERVE + ["-b", f"fd://{fd}", "-w", "1", "wsgi_app:app"]
    env = dict(os.environ, PYTHONPATH=APPS)
    proc = subprocess.Popen(cmd, cwd=APPS, env=env, pass_fds=[fd], stderr=subprocess.PIPE,
                            start_new_session=True)
    listener.close()
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                assert request(port, "GET", "/").body == b"hello"
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
    finally:
        os.killpg(proc.pid, 9)
        proc.wait(5)
        proc.stderr.close()


def test_fd_that_is_not_a_listener():
    proc = run_cli("-b", "fd://0", "wsgi_app:app")
    assert proc.returncode == 1
    assert "not a stream socket" in proc.stderr or "not listening" in proc.stderr \
        or "cannot use fd://0" in proc.stderr
