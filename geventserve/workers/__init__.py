"""Worker classes by name: the built-in ones, gunicorn's spellings of them, and dotted paths."""

from __future__ import annotations

import importlib
import re
from typing import Dict

WORKER_CLASSES: Dict[str, str] = {
    "gevent": "geventserve.workers.gevent:GeventWorker",
    "sync": "geventserve.workers.sync:SyncWorker",
}

# gunicorn's names (and class paths) for the workers that ours replace.
ALIASES: Dict[str, str] = {
    "egg:gunicorn#gevent": "gevent",
    "gunicorn.workers.ggevent.GeventWorker": "gevent",
    "gunicorn.workers.ggevent.GeventPyWSGIWorker": "gevent",
    "gevent_wsgi": "gevent",
    "gevent_pywsgi": "gevent",
    "egg:gunicorn#sync": "sync",
    "gunicorn.workers.sync.SyncWorker": "sync",
}

_DOTTED = re.compile(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)+(:[A-Za-z_][\w]*)?")


def canonical_worker_class(name: str) -> str:
    """Map a worker-class name to ``gevent``, ``sync`` or a dotted path; ValueError otherwise."""
    lowered = name.lower()
    if lowered in WORKER_CLASSES:
        return lowered
    if name in ALIASES:
        return ALIASES[name]
    if _DOTTED.fullmatch(name):
        return name
    raise ValueError("expected " + ", ".join(WORKER_CLASSES) + " or a dotted path such as "
                     "mypackage.workers.MyWorker")


def load_worker_class(name: str) -> type:
    """Import the class for a canonical worker-class name; ImportError says what was tried."""
    path = WORKER_CLASSES.get(name, name)
    if ":" in path:
        module_name, _, attr = path.partition(":")
    else:
        module_name, _, attr = path.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ImportError(f"cannot import worker class {name!r}: {exc}") from None
    cls = getattr(module, attr, None)
    if not isinstance(cls, type):
        raise ImportError(f"cannot use worker class {name!r}: {module_name} has no class {attr!r}")
    return cls
