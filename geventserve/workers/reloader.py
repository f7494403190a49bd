"""--reload: watch the app's source files (and --reload-extra-file) and report the first change.

Runs as a thread: a real one in the sync worker, a greenlet in the gevent worker (threading and
time are patched there), polling modification times once a second.
"""

from __future__ import annotations

import os
import sys
import sysconfig
import threading
import time
from typing import Callable, Dict, Iterable, List, Optional

INTERVAL = 1.0


def _library_dirs() -> List[str]:
    paths = sysconfig.get_paths()
    dirs = {paths.get(key) for key in ("stdlib", "platstdlib", "purelib", "platlib")}
    return [os.path.realpath(d) + os.sep for d in dirs if d]


def app_files(extra: Iterable[str]) -> List[str]:
    """The source files of the loaded modules outside the standard library and site-packages."""
    libraries = _library_dirs()
    files = set()
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if not path or not path.endswith(".py"):
            continue
        real = os.path.realpath(path)
        if not any(real.startswith(lib) for lib in libraries):
            files.add(real)
    files.update(os.path.realpath(path) for path in extra)
    return sorted(files)


def _mtime(path: str) -> Optional[float]:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return None


class Reloader:
    """Calls ``on_change(path)`` when a watched file changes, appears or disappears (again
    for each further change: a reload that fails leaves this worker serving)."""

    def __init__(self, extra_files: Iterable[str], on_change: Callable[[str], None]) -> None:
        self.extra_files = list(extra_files)
        self.on_change = on_change

    def start(self) -> None:
        # The first look happens now, before the worker says it is ready: a change made once
        # it serves is always a change.
        seen = {path: _mtime(path) for path in app_files(self.extra_files)}
        threading.Thread(target=self._run, args=(seen,), name="geventserve-reloader",
                         daemon=True).start()

    def _run(self, seen: Dict[str, Optional[float]]) -> None:
        while True:
            time.sleep(INTERVAL)
            for path, mtime in seen.items():
                now = _mtime(path)
                if now != mtime:
                    seen[path] = now
                    self.on_change(os.path.relpath(path))
                    break
