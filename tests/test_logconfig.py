"""Logging set up as gunicorn users have it: --log-config (fileConfig), logconfig_dict in the
config file and --log-config-json (dictConfig), with gunicorn's logger names gunicorn.error and
gunicorn.access; the flags keep the loggers a config leaves alone; USR1, the watchdog's report
and --capture-output with such a config; a bad config is one line and a non-zero exit."""

import json
import os
import re
import signal
import sys
import textwrap
import time

import pytest

from helpers import Server, request, run_command, wait_until

ACCESS_LINE = re.compile(r'^(ACCESS )?127\.0\.0\.1 - - \[.*\] "GET /pid HTTP/1\.1" 200 \d+ "-" "-"$')


def ini_file(tmp_path, error_path, access_path):
    """A gunicorn-style logging.conf: both loggers to their own files, with their own formats."""
    path = tmp_path / "logging.conf"
    path.write_text(textwrap.dedent(f"""\
        [loggers]
        keys=root, gunicorn.error, gunicorn.access

        [handlers]
        keys=console, error_file, access_file

        [formatters]
        keys=generic, access

        [logger_root]
        level=INFO
        handlers=console

        [logger_gunicorn.error]
        level=INFO
        handlers=error_file
        propagate=0
        qualname=gunicorn.error

        [logger_gunicorn.access]
        level=INFO
        handlers=access_file
        propagate=0
        qualname=gunicorn.access

        [handler_console]
        class=StreamHandler
        formatter=generic
        args=(sys.stdout, )

        [handler_error_file]
        class=logging.FileHandler
        formatter=generic
        args=('{error_path}',)

        [handler_access_file]
        class=logging.FileHandler
        formatter=access
        args=('{access_path}',)

        [formatter_generic]
        format=INI %(name)s %(levelname)s %(message)s
        class=logging.Formatter

        [formatter_access]
        format=ACCESS %(message)s
        class=logging.Formatter
        """))
    return path


def dict_config(error_path, access_path):
    """A logconfig_dict as gunicorn users write it: gunicorn's defaults give the root logger
    (on 'console') and the formatter 'generic'."""
    return {
        "version": 1,
        "loggers": {
            "gunicorn.error": {"level": "INFO", "handlers": ["error_file"], "propagate": False},
            "gunicorn.access": {"level": "INFO", "handlers": ["access_file"],
                                "propagate": False},
        },
        "handlers": {
            "console": {"class": "logging.StreamHandler", "formatter": "generic",
                        "stream": "ext://sys.stdout"},
            "error_file": {"class": "logging.FileHandler", "filename": str(error_path),
                           "formatter": "generic"},
            "access_file": {"class": "logging.FileHandler", "filename": str(access_path)},
        },
    }


GENERIC = r"\[[\d: +-]+\] \[\d+\] \[INFO\] "  # gunicorn's generic format, as the flags' one


def wait_ready_in(srv, path):
    """Wait for "Ready:" in the log file ``path``; the port the server listens on."""
    wait_until(lambda: srv.exited() is not None or path.exists() and "Ready:" in path.read_text(),
               timeout=20, message=f"Ready in {path}")
    assert srv.exited() is None, srv.log
    return int(re.search(r"Listening at: http://127.0.0.1:(\d+)", path.read_text()).group(1))


def serve_and_check(args, error_path, access_path, line_start):
    with Server(["-w", "1"] + args, wait=False) as srv:
        port = wait_ready_in(srv, error_path)
        assert request(port, "GET", "/pid").status == 200
        wait_until(lambda: access_path.exists() and "GET /pid" in access_path.read_text(),
                   timeout=10)
    errors = error_path.read_text().splitlines()
    listening = f"Listening at: http://127.0.0.1:{port} ({srv.pid})"
    assert any(re.match(line_start + re.escape(listening) + "$", line) for line in errors), \
        errors
    assert any(re.match(line_start + "Booting worker", line) for line in errors), errors
    access = access_path.read_text().splitlines()
    assert any(ACCESS_LINE.match(line) for line in access), access  # with no --access-logfile
    assert not any("Listening at" in line for line in srv.lines), srv.log
    return srv


def test_log_config_ini_file_routes_gunicorns_loggers(tmp_path):
    error_path, access_path = tmp_path / "error.log", tmp_path / "access.log"
    conf = ini_file(tmp_path, error_path, access_path)
    serve_and_check(["--log-config", str(conf)], error_path, access_path,
                    "INI gunicorn.error INFO ")


def test_logconfig_dict_in_the_config_file(tmp_path):
    error_path, access_path = tmp_path / "error.log", tmp_path / "access.log"
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text(f"logconfig_dict = {dict_config(error_path, access_path)!r}\n")
    serve_and_check(["-c", str(conf)], error_path, access_path, GENERIC)


def test_log_config_json_file(tmp_path):
    error_path, access_path = tmp_path / "error.log", tmp_path / "access.log"
    conf = tmp_path / "logging.json"
    conf.write_text(json.dumps(dict_config(error_path, access_path)))
    # the dict config takes precedence over the ini file, as in gunicorn
    ini = ini_file(tmp_path, tmp_path / "unused-error.log", tmp_path / "unused-access.log")
    serve_and_check(["--logconfig-json", str(conf), "--logconfig", str(ini)],
                    error_path, access_path, GENERIC)
    assert not (tmp_path / "unused-error.log").exists()


def test_gunicorns_defaults_fill_in_a_partial_dict(tmp_path):
    """A dict with only the root logger: gunicorn's defaults add gunicorn.error on stderr and
    gunicorn.access on stdout (an access log without --access-logfile), in the generic format."""
    conf = tmp_path / "conf.py"
    conf.write_text("logconfig_dict = {'root': {'level': 'WARNING', 'handlers': []}}\n")
    with Server(["-w", "1", "-c", str(conf)]) as srv:
        request(srv.port, "GET", "/pid")
        wait_until(lambda: any("GET /pid" in line for line in srv.out_lines), timeout=10)
    assert any(re.match(r"^\[[\d: +-]+\] \[\d+\] \[INFO\] Listening at", line)
               for line in srv.lines), srv.log


def test_a_logger_the_config_leaves_alone_keeps_the_flags(tmp_path):
    """The ini file names gunicorn.access only: the error log stays on --error-logfile, the
    access log follows the file and not --access-logfile."""
    access_path = tmp_path / "access.log"
    conf = tmp_path / "logging.conf"
    conf.write_text(textwrap.dedent(f"""\
        [loggers]
        keys=root, access
        [handlers]
        keys=access_file
        [formatters]
        keys=access
        [logger_root]
        handlers=
        [logger_access]
        level=INFO
        handlers=access_file
        propagate=0
        qualname=gunicorn.access
        [handler_access_file]
        class=FileHandler
        formatter=access
        args=('{access_path}',)
        [formatter_access]
        format=ACCESS %(message)s
        """))
    error_path = tmp_path / "error.log"
    with Server(["-w", "1", "--log-level", "debug", "--log-config", str(conf),
                 "--error-logfile", str(error_path), "--access-logfile", "-"],
                wait=False) as srv:
        port = wait_ready_in(srv, error_path)
        request(port, "GET", "/pid")
        wait_until(lambda: access_path.exists() and "GET /pid" in access_path.read_text(),
                   timeout=10)
    assert re.search("^" + GENERIC + "Listening at", error_path.read_text(), re.M)
    assert not any("GET /pid" in line for line in srv.out_lines)


def test_usr1_reopens_a_config_file_handler_and_the_watchdog_writes_there(tmp_path):
    """The config's file handler is on the root logger (gunicorn.error propagates to it): USR1
    reopens it after a move, and the watchdog's report (written without locks) reaches it."""
    log_path = tmp_path / "all.log"
    conf = tmp_path / "conf.py"
    conf.write_text(textwrap.dedent(f"""\
        logconfig_dict = {{
            "loggers": {{"gunicorn.error": {{"level": "INFO", "propagate": True}}}},
            "root": {{"level": "INFO", "handlers": ["file"]}},
            "handlers": {{"file": {{"class": "logging.FileHandler",
                                   "filename": {str(log_path)!r}, "formatter": "generic"}}}},
        }}
        """))
    with Server(["-w", "1", "--timeout", "2", "-c", str(conf)], wait=False) as srv:
        port = wait_ready_in(srv, log_path)
        os.rename(log_path, tmp_path / "all.log.1")
        srv.signal(signal.SIGUSR1)
        wait_until(log_path.exists, timeout=10)  # reopened: the supervisor's, then the worker's
        time.sleep(0.5)
        try:
            request(port, "GET", "/spin?10", timeout=10)
        except (OSError, EOFError):
            pass  # the worker is ended under the request
        wait_until(lambda: "WORKER TIMEOUT" in log_path.read_text(), timeout=15)
    report = [line for line in log_path.read_text().splitlines() if "WORKER TIMEOUT" in line]
    assert report[0].startswith("[") and "[CRITICAL] WORKER TIMEOUT" in report[0], report
    moved = (tmp_path / "all.log.1").read_text()
    assert "Listening at" in moved and "reopening the log files" in moved


def test_capture_output_goes_to_the_error_logfile_under_a_config(tmp_path):
    error_path = tmp_path / "error.log"
    conf = tmp_path / "conf.py"
    conf.write_text("logconfig_dict = {'loggers': {'gunicorn.error': {'level': 'INFO', "
                    "'handlers': ['error_console']}}}\n")
    with Server(["-w", "1", "-c", str(conf), "--error-logfile", str(error_path),
                 "--capture-output"], app="print_app:app", wait=False) as srv:
        port = wait_ready_in(srv, error_path)  # the config's stderr handler: captured too
        request(port, "GET", "/")
        wait_until(lambda: "printed by the app" in error_path.read_text(), timeout=10)


@pytest.mark.parametrize("write,args,message", [
    (None, ["--log-config", "/nonexistent/logging.conf"],
     "cannot read --log-config '/nonexistent/logging.conf': no such file"),
    ("[loggers]\nkeys=root\n", ["--log-config", "{path}"], "cannot be applied: KeyError"),
    ("not json", ["--log-config-json", "{path}"], "is not JSON"),
    ("[1, 2]", ["--log-config-json", "{path}"], "expected a JSON object"),
    ('{"handlers": {"h": {"class": "no.such.Handler"}}}', ["--log-config-json", "{path}"],
     "cannot be applied: ValueError"),
    ("logconfig_dict = {'handlers': {'h': {'class': 'logging.FileHandler', "
     "'filename': '/nonexistent/x.log'}}}\n", ["-c", "{path}"],
     "logconfig_dict cannot be applied"),
    ("logconfig_dict = 'verbose'\n", ["-c", "{path}"], "expected a dict"),
])
def test_a_bad_logging_config_is_one_line(tmp_path, write, args, message):
    path = tmp_path / "bad-config"
    if write is not None:
        path.write_text(write)
    args = [arg.format(path=path) for arg in args]
    proc = run_command([sys.executable, "-m", "geventserve", "-b", "127.0.0.1:0", *args,
                        "wsgi_app:app"], timeout=30,
                       cwd=os.path.join(os.path.dirname(__file__), "apps"))
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert message in lines[0], lines[0]
