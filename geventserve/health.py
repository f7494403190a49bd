"""The supervisor's own answers on --liveness-path and --readiness-path, for --metrics-bind (the
workers answer them on the serving sockets: http/health.py).

Liveness is 200 whenever the supervisor's loop gets to answer. Readiness is 200 once all the
workers of a generation have been ready, and 503 from the moment a stop or a drain begins, or
while the first workers start. The metrics endpoint maps each configured path to ``answer``.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

Answer = Tuple[int, bytes]  # status, body


def ready(server: Any) -> bool:
    """``server``: the Supervisor."""
    generation = server.generation
    return (server.stopping is None and not server.drain.active and generation is not None
            and generation.serving)


def paths(liveness: Optional[str], readiness: Optional[str]) -> Dict[str, bool]:
    """The health paths set (--liveness-path, --readiness-path): True for readiness."""
    found = {}
    if liveness:
        found[liveness] = False
    if readiness:
        found[readiness] = True
    return found


def answers(server: Any) -> Dict[str, bool]:
    """The health paths of ``server``'s settings, as ``paths``."""
    return paths(server.config.liveness_path, server.config.readiness_path)


def answer(server: Any, readiness: bool) -> Answer:
    if not readiness:
        return 200, b"alive\n"
    return (200, b"ready\n") if ready(server) else (503, b"not ready\n")
