"""Settings: every one by the CLI, the config file and the environment, with the precedence
checked through --print-config; config files; bad values; the generated docs."""

import ast
import os
import signal
import socket
import sys
import textwrap

import pytest

from geventserve.docs import render
from geventserve.settings import HOOKS, SETTINGS
from helpers import APPS, Server, request, run_command, wait_until

GEVENTSERVE = [sys.executable, "-m", "geventserve"]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_cli(args, env=None, cwd=APPS, timeout=30):
    full_env = dict(os.environ, PYTHONPATH=APPS)
    for name in ("GEVENTSERVE_CMD_ARGS", "WEB_CONCURRENCY", "SCRIPT_NAME"):
        full_env.pop(name, None)
    full_env.update(env or {})
    return run_command(GEVENTSERVE + list(args), timeout=timeout, cwd=cwd, env=full_env)


def printed_config(stdout):
    """--print-config output -> {name: (value, source)}."""
    result = {}
    for line in stdout.splitlines():
        if line.startswith("#"):
            continue
        assignment, _, source = line.rpartition("  # ")
        name, _, value = assignment.partition(" = ")
        result[name] = (ast.literal_eval(value), source)
    return result


# Settings whose examples need real files, or that exclude each other, get their own values.
SKIPPED_IN_BULK = {"reload",  # --reload cannot go with --preload, which the bulk sets
                  "logconfig_dict"}  # config file only: no flag (tests/test_logconfig.py)


@pytest.fixture(scope="module")
def examples(tmp_path_factory):
    """Two different command-line values per setting (files made real where they must be)."""
    files = tmp_path_factory.mktemp("tls")
    values = {}
    for setting in SETTINGS:
        if setting.section == HOOKS or setting.name in SKIPPED_IN_BULK:
            continue
        if setting.action == "store_true":
            values[setting.name] = None
            continue
        pair = list(setting.examples)
        if setting.name in ("certfile", "keyfile", "ca_certs"):
            pair = [str(files / f"{setting.name}-{i}.pem") for i in range(2)]
            for path in pair:
                open(path, "w").close()
        if setting.name == "chdir":
            pair = [str(files), APPS]
        values[setting.name] = pair
    return values


def cli_args(examples, index):
    """Flags (and the positional app) setting every setting to its example ``index``."""
    args = []
    app = None
    for setting in SETTINGS:
        if setting.name not in examples:
            continue
        if setting.name == "wsgi_app":
            app = examples[setting.name][index]
        elif setting.action == "store_true":
            args.append(setting.flags[-1])
        else:
            args += [setting.flags[-1], examples[setting.name][index]]
    return args + [app]


def config_file(examples, index, path):
    lines = []
    for setting in SETTINGS:
        if setting.name not in examples:
            continue
        if setting.action == "store_true":
            value = index == 0  # the file says True for example 0, False for example 1
        else:
            value = setting.validate(examples[setting.name][index])
        lines.append(f"{setting.name} = {value!r}")
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def expected(name, examples, index):
    setting = next(s for s in SETTINGS if s.name == name)
    if setting.action == "store_true":
        return True
    value = setting.validate(examples[name][index])
    return value


def test_every_setting_from_each_source_with_precedence(examples, tmp_path):
    conf = config_file(examples, 0, tmp_path / "conf.py")
    env_args = " ".join(f"'{a}'" for a in cli_args(examples, 1))

    # config file alone
    out = printed_config(run_cli(["-c", conf, "--print-config"]).stdout)
    for name in examples:
        assert out[name] == (expected(name, examples, 0), f"config file {conf}"), name

    # GEVENTSERVE_CMD_ARGS beats the config file
    proc = run_cli(["-c", conf, "--print-config"], env={"GEVENTSERVE_CMD_ARGS": env_args})
    assert proc.returncode == 0, proc.stderr
    out = printed_config(proc.stdout)
    for name in examples:
        assert out[name] == (expected(name, examples, 1), "GEVENTSERVE_CMD_ARGS"), name

    # the command line beats both
    proc = run_cli(["-c", conf, "--print-config"] + cli_args(examples, 0),
                   env={"GEVENTSERVE_CMD_ARGS": env_args})
    assert proc.returncode == 0, proc.stderr
    out = printed_config(proc.stdout)
    for name in examples:
        assert out[name] == (expected(name, examples, 0), "command line"), name

    # and each default is what the table says
    out = printed_config(run_cli(["--print-config", "wsgi_app:app"]).stdout)
    for setting in SETTINGS:
        if setting.section != HOOKS and setting.name != "wsgi_app":
            assert out[setting.name] == (setting.default, "default"), setting.name


def test_settings_take_effect_from_a_config_file(tmp_path):
    conf = tmp_path / "geventserve.conf.py"
    conf.write_text(textwrap.dedent("""
        import multiprocessing
        workers = 2
        keepalive = 0
        raw_env = ["GREETING=from the config file"]
        _private_helper = 1
    """))
    with Server([], cwd=str(tmp_path), app="wsgi_app:app") as srv:  # ./geventserve.conf.py
        assert len(srv.worker_pids()) == 2
        response = request(srv.port, "GET", "/environ")
        assert response.header("connection") == "close"  # keepalive = 0
    assert "unknown setting" not in srv.log  # modules and _names are not settings


def test_gunicorn_config_file_runs_unchanged(tmp_path):
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text(textwrap.dedent("""
        # a typical gunicorn.conf.py
        import multiprocessing

        bind = "127.0.0.1:0"
        workers = 2
        worker_class = "gevent"
        worker_connections = 500
        timeout = 60
        graceful_timeout = 20
        keepalive = 2
        max_requests = 1000
        max_requests_jitter = 50
        preload_app = False
        accesslog = "-"
        errorlog = "-"
        loglevel = "info"
        access_log_format = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" %(D)s'
        forwarded_allow_ips = "127.0.0.1,::1"
        limit_request_line = 4094
        limit_request_fields = 100
        limit_request_field_size = 8190
        proc_name = "shop"
        backlog = 2048
        daemon = False
        worker_tmp_dir = "/dev/shm"

        def post_fork(server, worker):
            server.log.info("Worker spawned (pid: %s)", worker.pid)

        def worker_int(worker):
            worker.log.info("worker received INT or QUIT signal")
    """))
    with Server(["-c", str(conf)], bind=[]) as srv:
        assert request(srv.port, "GET", "/").status == 200
        srv.wait_for_log(r"Worker spawned \(pid: \d+\)")
        assert len(srv.worker_pids()) == 2
    assert "unknown setting 'daemon' ignored" in srv.log
    assert "unknown setting 'worker_tmp_dir' ignored" in srv.log


@pytest.mark.parametrize("args,message", [
    (["-w", "many"], "invalid value 'many' for --workers"),
    (["-w", "0"], "expected an integer of at least 1"),
    (["--timeout", "soon"], "invalid value 'soon' for --timeout"),
    (["--timeout", "0.3"], "at least 1 second"),
    (["--keep-alive", "-1"], "0 or more"),
    (["-b", "nonsense:port"], "the port must be a number"),
    (["-k", "tornado"], "gunicorn's Tornado worker (for Tornado apps); geventserve runs -k gevent"),
    (["-k", "threads"], "expected gevent, sync or a dotted path"),
    (["--log-level", "loud"], "expected one of debug, info, warning, error, critical"),
    (["--limit-request-line", "99999"], "at most 8190"),
    (["--forwarded-allow-ips", "10.0.0.0/33"], "is not an IP address"),
    (["-e", "NOVALUE"], "is not KEY=VALUE"),
    (["--cert-reqs", "sometimes"], "expected none, optional or required"),
    (["--access-logformat", "%(zz)s"], "unknown access log atom %(zz)s"),
    (["--root-path", "app"], "starts with /"),
    (["--certfile", "/nonexistent/cert.pem"], "--certfile '/nonexistent/cert.pem' cannot be read"),
    (["--keyfile", "/etc/hostname"], "--keyfile needs --certfile"),
    (["--reload", "--preload"], "--reload cannot be used with --preload"),
    (["-c", "/nonexistent/conf.py"], "cannot read config file '/nonexistent/conf.py'"),
    (["--drain-delay", "-1"], "invalid value '-1' for --drain-delay"),
    (["--drain-delay", "soon"], "invalid value 'soon' for --drain-delay"),
    (["--readiness-path", "readyz"], "invalid value 'readyz' for --readiness-path"),
    (["--liveness-path", "/live z"], "invalid value '/live z' for --liveness-path"),
    (["--liveness-path", "/h", "--readiness-path", "/h"], "must differ"),
    (["--proxy-protocol", "v1", "--proxy-allow-from", ""], "--proxy-protocol needs"),
    (["--proxy-protocol", "v3"], "invalid value 'v3' for --proxy-protocol"),
    (["--max-worker-memory", "-5"], "invalid value '-5' for --max-worker-memory"),
    (["--max-worker-lifetime", "long"], "invalid value 'long' for --max-worker-lifetime"),
    (["--user", "no-such-user-here"], "no such user"),
    (["--group", "no-such-group-here"], "no such group"),
    (["--umask", "0999"], "invalid value '0999' for --umask"),
])
def test_bad_values_are_one_line(args, message):
    proc = run_cli(args + ["wsgi_app:app"])
    assert proc.returncode == 1, proc.stderr  # a setting (2 is for the command line's grammar)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert message in lines[0], lines[0]


@pytest.mark.parametrize("body,message", [
    ("workers = 'many'\n", "invalid value 'many' for workers (config file"),
    ("bind = 'nonsense'\n", "cannot listen on nonsense:8000: cannot resolve 'nonsense'"),
    ("bind = 'host:http'\n", "invalid value 'host:http' for bind"),
    ("timeout = [1]\n", "for timeout"),
    ("def post_fork(server):\n    pass\n", "expected a function of 2 argument(s)"),
    ("workers = \n", "line 1"),
    ("raise RuntimeError('broken config')\n", "RuntimeError: broken config"),
])
def test_bad_config_files_are_one_line(tmp_path, body, message):
    conf = tmp_path / "bad.conf.py"
    conf.write_text(body)
    proc = run_cli(["-c", str(conf), "wsgi_app:app"])
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert message in lines[0], lines[0]


def test_unreadable_config_file(tmp_path):
    conf = tmp_path / "secret.conf.py"
    conf.write_text("workers = 2\n")
    conf.chmod(0)
    if os.access(conf, os.R_OK):  # root reads anything: use a directory instead
        conf = tmp_path
    proc = run_cli(["-c", str(conf), "wsgi_app:app"])
    assert proc.returncode == 1
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "cannot read config file" in proc.stderr


def test_unknown_key_is_a_warning_naming_it(tmp_path):
    conf = tmp_path / "conf.py"
    conf.write_text("workerz = 3\n")
    proc = run_cli(["-c", str(conf), "--print-config", "wsgi_app:app"])
    assert proc.returncode == 0
    assert "unknown setting 'workerz' ignored" in proc.stderr


@pytest.mark.parametrize("name,canonical", [
    ("gevent", "gevent"), ("sync", "sync"), ("GEVENT", "gevent"),
    ("egg:gunicorn#gevent", "gevent"), ("gunicorn.workers.ggevent.GeventWorker", "gevent"),
    ("gevent_wsgi", "gevent"), ("gevent_pywsgi", "gevent"),
    ("egg:gunicorn#sync", "sync"), ("gunicorn.workers.sync.SyncWorker", "sync"),
    ("geventserve.workers.sync.SyncWorker", "geventserve.workers.sync.SyncWorker"),
])
def test_worker_class_spellings(name, canonical):
    out = printed_config(run_cli(["-k", name, "--print-config", "wsgi_app:app"]).stdout)
    assert out["worker_class"][0] == canonical


def test_dotted_worker_class_serves():
    with Server(["-k", "geventserve.workers.sync.SyncWorker", "-w", "1"]) as srv:
        response = request(srv.port, "GET", "/")
        assert response.status == 200 and response.header("connection") == "close"


def test_port_variable_sets_the_default_bind():
    out = printed_config(run_cli(["--print-config", "wsgi_app:app"], env={"PORT": "5055"}).stdout)
    assert out["bind"][0] == ["0.0.0.0:5055"]
    out = printed_config(run_cli(["--print-config", "-b", "127.0.0.1:1", "wsgi_app:app"],
                                 env={"PORT": "5055"}).stdout)
    assert out["bind"][0] == ["127.0.0.1:1"]


def test_check_config():
    proc = run_cli(["--check-config", "wsgi_app:app"])
    assert proc.returncode == 0 and "configuration OK" in proc.stdout
    proc = run_cli(["--check-config", "nosuchmodule:app"])
    assert proc.returncode == 4
    assert proc.stderr.strip().count("\n") == 0 and "no module named" in proc.stderr
    proc = run_cli(["--check-config", "-w", "x", "wsgi_app:app"])
    assert proc.returncode == 1


def test_docs_are_current():
    with open(os.path.join(ROOT, "docs", "settings.md")) as fh:
        assert fh.read() == render(), "docs/settings.md is stale: run make docs"


def test_docs_list_every_setting():
    text = render()
    for setting in SETTINGS:
        assert f"`{setting.name}" in text, setting.name


def test_help_is_grouped_by_section():
    proc = run_cli(["--help"])
    assert proc.returncode == 0
    for section in ("Server socket:", "Worker processes:", "Timeouts:", "Behind a proxy:",
                    "TLS:", "Logging:"):
        assert section in proc.stdout


def test_gunicorn_conf_py_is_read_when_there_is_no_other(tmp_path):
    """No -c and no ./geventserve.conf.py: ./gunicorn.conf.py is read, as gunicorn reads it;
    the log names the file read, at start and on a reload. geventserve.conf.py comes first."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text(f"bind = '127.0.0.1:{port}'\nworkers = 1\n")
    with Server([], cwd=str(tmp_path), bind=[]) as srv:
        assert srv.port == port
        assert request(port, "GET", "/").status == 200
        named = f"[INFO] Config file: {conf.resolve()}"
        assert srv.log.count(named) == 1, srv.log
        srv.signal(signal.SIGHUP)
        wait_until(lambda: srv.log.count(named) == 2, message="the file named on HUP")
        srv.wait_for_log(r"\] Ready: 1 worker", start=srv.log.count("\n"))
        assert request(port, "GET", "/").status == 200
    (tmp_path / "geventserve.conf.py").write_text("workers = 3\n")
    out = printed_config(run_cli(["--print-config", "wsgi_app:app"], cwd=str(tmp_path)).stdout)
    assert out["workers"] == (3, "config file geventserve.conf.py")
    assert out["bind"][1] == "default"


def test_readme_and_architecture_name_every_exit_code_and_setting():
    from geventserve.exits import ExitCode

    with open(os.path.join(ROOT, "README.md")) as fh:
        readme = fh.read()
    for code in ExitCode:
        assert f"\n| {int(code)} | " in readme, f"README's exit-code table lacks {int(code)}"
    with open(os.path.join(ROOT, "docs", "architecture.md")) as fh:
        owners = fh.read().partition("## Which module owns each setting's effect")[2]
    for setting in SETTINGS:
        assert f"`{setting.name}`" in owners, \
            f"docs/architecture.md does not say which module owns {setting.name}"
