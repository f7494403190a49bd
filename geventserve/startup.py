"""The supervisor's chores at start (PID file, open-files limit, --preload, the first log
lines) and those a reload repeats (log files, -e variables); StartupError for what stops a start.
"""

from __future__ import annotations

import gc
import os
import sys
from typing import Any, Callable, List, Optional

from . import logs, privileges, process, sockets, statsd
from .exits import ExitCode
from .loading import AppLoadError, load_app, prepare_path
from .settings import Config


class StartupError(Exception):
    """The server cannot start; one line for the operator and the exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def configure_logs(config: Config) -> None:
    """Point the logs where the settings say, and statsd (OSError with one line if a file
    cannot open or a logging config does not apply); the log files are given to
    --user/--group."""
    logs.set_file_owner(privileges.owner(config))
    logs.setup(config.loglevel, config.errorlog, config.accesslog, config.access_log_format,
               config.access_log_json, config.capture_output, config.logconfig_dict,
               config.logconfig_json, config.logconfig)
    statsd.configure(config.statsd_host, config.statsd_prefix, config.dogstatsd_tags)


def log_config_file(config: Config) -> None:
    """Say which config file the settings were read from (at start and on each reload)."""
    if config.file:
        logs.error_log.info("Config file: %s", config.file)


def apply_environment(config: Config) -> None:
    """-e/--env: variables for the app (set here, so that the workers inherit them)."""
    for entry in config.raw_env:
        key, _, value = entry.partition("=")
        os.environ[key] = value


def log_start(config: Config, listeners: List[Any], pid: int, metrics_at: str = "") -> None:
    """The start's lines (tools and tests read "Listening at" and "Metrics at" for the
    addresses)."""
    logs.error_log.info("Starting geventserve %s", sys.modules["geventserve"].__version__)
    log_config_file(config)
    for listener in listeners:
        logs.error_log.info("Listening at: %s (%d)", sockets.describe(listener), pid)
    if metrics_at:
        logs.error_log.info("Metrics at: %s (/metrics, /status)", metrics_at)
    logs.error_log.info("Using worker: %s", config.worker_class)


def use_logs_and_environment(config: Config) -> None:
    """Settings read again on a reload: their log files (OSError with one line if one cannot
    open), the config file named there, their -e variables."""
    configure_logs(config)
    log_config_file(config)
    apply_environment(config)


def check_pidfile(path: str) -> process.PidFile:
    """The PID file to write once the listeners are open; StartupError if it names a
    geventserve that may still run."""
    pidfile = process.PidFile(path)
    owner = pidfile.running_owner()
    if owner is not None:
        pid, certain = owner
        state = "still running" if certain else "which may still be running"
        raise StartupError(f"the PID file {pidfile.path} names geventserve pid {pid}, {state}: "
                           "stop it first, or give another --pid", ExitCode.CONFIG)
    return pidfile


def write_pidfile(pidfile: Optional[process.PidFile], pid: int) -> Optional[process.PidFile]:
    """Write the PID file checked before (if any) once the listeners are open; the file, to
    remove at exit, or StartupError."""
    if pidfile is not None:
        try:
            pidfile.write(pid)
        except OSError as exc:
            raise StartupError(str(exc), ExitCode.CONFIG) from None
    return pidfile


def check_open_files(config: Config) -> None:
    """Each gevent connection may hold a second socket (the app's own call upstream)."""
    if config.worker_class == "sync":
        return
    needed = 2 * config.worker_connections + 128
    before, after, enough = process.raise_open_files_limit(needed)
    if after != before:
        logs.error_log.info("Raised the open-files limit from %d to %d for "
                            "--worker-connections %d", before, after, config.worker_connections)
    if not enough:
        logs.error_log.warning(
            "The open-files limit is %d, below the %d that --worker-connections %d needs: "
            "raise the hard limit (ulimit -Hn, LimitNOFILE= in systemd) or lower "
            "--worker-connections", after, needed, config.worker_connections)


def preload(config: Config, worker_class: type) -> Callable[..., Any]:
    """--preload: import the app here, prepared as the workers would be (patched first)."""
    worker_class.before_app_import(in_supervisor=True)
    try:
        prepare_path(config.chdir, config.pythonpath)
        app = load_app(config.wsgi_app)
    except AppLoadError as exc:
        logs.error_log.debug("application load failed", exc_info=True)
        raise StartupError(str(exc), ExitCode.APP_LOAD) from None
    gc.freeze()  # keep the collector off the shared pages, for copy-on-write
    return app
