"""Worker classes by name: the built-in ones, gunicorn's spellings of them, and dotted paths;
the worker classes of other servers are refused in one line that says what to use instead."""

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
    # gevent-websocket's, which Flask-SocketIO's documentation gives: -k gevent offers its
    # environ["wsgi.websocket"] whenever gevent-websocket is installed.
    "geventwebsocket.gunicorn.workers.GeventWebSocketWorker": "gevent",
    "geventwebsocket.gunicorn.workers.GeventWebSocketWorker:GeventWebSocketWorker": "gevent",
}

_THREADS = "gunicorn's threaded worker (a thread per connection)"
_ASGI = "uvicorn's worker, for ASGI apps (geventserve serves WSGI apps: serve an ASGI app " \
        "with uvicorn itself)"
_AIOHTTP = "aiohttp's worker, for aiohttp (asyncio) apps, not WSGI ones"
#: other servers' worker classes, by the names their documentation gives: what each is
FOREIGN: Dict[str, str] = {
    **dict.fromkeys(("gthread", "egg:gunicorn#gthread", "gunicorn.workers.gthread.ThreadWorker"),
                    _THREADS),
    **dict.fromkeys(("eventlet", "egg:gunicorn#eventlet",
                     "gunicorn.workers.geventlet.EventletWorker"),
                    "gunicorn's eventlet worker (eventlet, a rival of gevent)"),
    **dict.fromkeys(("tornado", "egg:gunicorn#tornado", "gunicorn.workers.gtornado.TornadoWorker"),
                    "gunicorn's Tornado worker (for Tornado apps)"),
    **dict.fromkeys(("asgi", "egg:gunicorn#asgi", "gunicorn.workers.gasgi.ASGIWorker"),
                    "gunicorn's worker for ASGI apps (geventserve serves WSGI apps)"),
    **dict.fromkeys(("uvicorn.workers.UvicornWorker", "uvicorn.workers.UvicornH11Worker",
                     "uvicorn_worker.UvicornWorker", "uvicorn_worker.UvicornH11Worker"), _ASGI),
    **dict.fromkeys(("aiohttp.GunicornWebWorker", "aiohttp.GunicornUVLoopWebWorker",
                     "aiohttp.worker.GunicornWebWorker",
                     "aiohttp.worker.GunicornUVLoopWebWorker"), _AIOHTTP),
}
INSTEAD = ("geventserve runs -k gevent (a greenlet per connection: thousands at once, "
           "WebSockets included) or -k sync")

_DOTTED = re.compile(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)+(:[A-Za-z_][\w]*)?")


def canonical_worker_class(name: str) -> str:
    """Map a worker-class name to ``gevent``, ``sync`` or a dotted path; ValueError otherwise."""
    lowered = name.lower()
    if lowered in WORKER_CLASSES:
        return lowered
    if name in ALIASES:
        return ALIASES[name]
    foreign = FOREIGN.get(name) or FOREIGN.get(lowered)
    if foreign is not None:
        raise ValueError(f"it is {foreign}; {INSTEAD}")
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
    from .base import Worker

    if not issubclass(cls, Worker):
        what = ("a gunicorn worker class" if _is_gunicorn_worker(cls)
                else "not a geventserve worker class (a subclass of "
                     "geventserve.workers.base.Worker)")
        raise ImportError(f"cannot use worker class {name}: it is {what}; {INSTEAD}")
    return cls


def _is_gunicorn_worker(cls: type) -> bool:
    return any(f"{base.__module__}.{base.__qualname__}" == "gunicorn.workers.base.Worker"
               for base in cls.__mro__)
