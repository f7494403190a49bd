"""The servers the modes start, geventserve or gunicorn serving an app of the examples, and the
check that each answers before locust starts."""

from __future__ import annotations

import http.client
from contextlib import ExitStack
from pathlib import Path
from typing import Dict, Optional, Sequence

from harness.probe import http_get
from harness.process import Process, server_env
from harness.servers import (
    GEVENTSERVE_READY,
    GUNICORN_BOOTED,
    geventserve_command,
    gunicorn_command,
)
from loadtests.modes import EXAMPLES, REPORTS, StartError

START_TIMEOUT = 30.0  # seconds for a server to boot its workers, then to answer
STOP_TIMEOUT = 10.0  # seconds for a server to stop after its stop signal, before SIGKILL
GRACEFUL_TIMEOUT = 5  # --graceful-timeout given to geventserve and gunicorn


def start_server(stack: ExitStack, kind: str, worker: str, workers: int, binds: Sequence[str],
                 app: str, worker_connections: int, log: Path, ready_url: str,
                 env: Optional[Dict[str, str]] = None, name: str = "") -> Process:
    """geventserve or gunicorn (``kind``) serving ``app`` of the examples from the reports
    directory (so no ./geventserve.conf.py or ./gunicorn.conf.py is picked up), stopped when
    ``stack`` closes; returned once all its workers are up and ``ready_url`` answers."""
    options = ["-k", worker, "-w", str(workers), "--worker-connections",
               str(worker_connections), "--graceful-timeout", str(GRACEFUL_TIMEOUT),
               "--chdir", str(EXAMPLES)]
    for bind in binds:
        options += ["-b", bind]
    if kind == "geventserve":
        cmd, ready, count = geventserve_command(options, app), GEVENTSERVE_READY, 1
    else:
        cmd, ready, count = gunicorn_command(options, app), GUNICORN_BOOTED, workers
    process = stack.enter_context(Process(cmd, name=name or kind, cwd=str(REPORTS),
                                          env=server_env(env), log=str(log),
                                          stop_timeout=STOP_TIMEOUT).start())
    process.wait_for_log(ready, timeout=START_TIMEOUT, count=count)
    process.wait_answer(ready_url, timeout=START_TIMEOUT)
    return process


def preflight(base: str, paths: Sequence[str], name: str) -> None:
    """One GET of each path must answer 2xx, or the load test would only measure errors."""
    for path in paths:
        try:
            status, body = http_get(base + path, timeout=15)
        except (OSError, http.client.HTTPException) as exc:
            raise StartError(f"{name}: GET {path} failed: {type(exc).__name__}: {exc}")
        if not 200 <= status < 300:
            raise StartError(f"{name}: GET {path} answered {status}: {body[:300]!r}")
