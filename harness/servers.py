"""The command lines of the servers under test (geventserve, gunicorn, granian), and the log
lines that say they are ready."""

from __future__ import annotations

import functools
import subprocess
import sys
from typing import List, Optional, Sequence

#: geventserve logs this once all its workers serve
GEVENTSERVE_READY = r"\[INFO\] Ready: "
#: gunicorn logs this once per worker it boots
GUNICORN_BOOTED = r"Booting worker with pid"


def geventserve_command(options: Sequence[str], app: Optional[str] = None) -> List[str]:
    """``python -m geventserve OPTIONS [APP]`` with this interpreter."""
    return [sys.executable, "-m", "geventserve", *options, *([app] if app else [])]


@functools.cache
def _gunicorn_help() -> str:
    return subprocess.run([sys.executable, "-m", "gunicorn", "--help"], capture_output=True,
                          text=True, timeout=60).stdout


def gunicorn_command(options: Sequence[str], app: str) -> List[str]:
    """``python -m gunicorn OPTIONS APP`` with this interpreter; gunicorn 24+ also gets
    --no-control-socket (its control socket has a fixed path in $HOME: two servers clash)."""
    extra = ["--no-control-socket"] if "--no-control-socket" in _gunicorn_help() else []
    return [sys.executable, "-m", "gunicorn", *options, *extra, app]


def granian_command(options: Sequence[str], app: str) -> List[str]:
    """``python -m granian --interface wsgi OPTIONS APP`` with this interpreter (granian runs
    the WSGI app in its own blocking threads, not in greenlets)."""
    return [sys.executable, "-m", "granian", "--interface", "wsgi", *options, app]
