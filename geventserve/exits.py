"""Exit codes of the server and of its workers, named once (3 and 4 are gunicorn's values)."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    CONFIG = 1  # a setting, the config file, a listener or the PID file
    USAGE = 2  # the command line
    WORKER_BOOT = 3  # a worker could not start (its class, TLS files, a hook)
    APP_LOAD = 4  # the application does not import
    WORKER_TIMEOUT = 5  # a worker ended by its watchdog (blocked event loop)
