"""The gevent worker's start-up audit: once the app is imported, one WARNING line for each loaded
module known to block the event loop (a C driver that waits on its own sockets), and for each real
OS thread running beside it, with the fix.

To cover another module, add a ``Blocker`` to ``BLOCKERS``.
"""

from __future__ import annotations

import os
import sys
import threading
from dataclasses import dataclass
from types import CodeType, FrameType, ModuleType
from typing import Any, Callable, List, Optional, Tuple

from . import logs
from .process import original


def _is_itself(name: str) -> Callable[[ModuleType], bool]:
    """The module under that name is the real one (PyMySQL installs itself as MySQLdb)."""
    return lambda module: getattr(module, "__name__", None) == name


def _psycopg2_blocks(module: ModuleType) -> bool:
    get_wait_callback = getattr(sys.modules.get("psycopg2.extensions"), "get_wait_callback", None)
    return get_wait_callback is not None and get_wait_callback() is None


def _grpc_blocks(module: ModuleType) -> bool:
    # init_gevent() sets this flag of grpc's Cython core; without the flag, say nothing.
    return getattr(sys.modules.get("grpc._cython.cygrpc"), "g_gevent_activated", None) is False


@dataclass(frozen=True)
class Blocker:
    """A module that blocks the event loop when ``blocks(module)`` says so, once loaded."""

    module: str
    blocks: Callable[[ModuleType], bool]
    problem: str
    fix: str


BLOCKERS = (
    Blocker("psycopg2", _psycopg2_blocks,
            "psycopg2 has no wait callback, so each query blocks the whole worker",
            "call psycogreen.gevent.patch_psycopg() (pip install psycogreen) in the app "
            "module, before the first connection"),
    Blocker("MySQLdb", _is_itself("MySQLdb"),
            "mysqlclient (MySQLdb) waits for MySQL in C, so each query blocks the whole worker",
            "use PyMySQL (pure Python; pymysql.install_as_MySQLdb() lets Django use it), or run "
            "the queries in gevent's threadpool"),
    Blocker("grpc", _grpc_blocks,
            "grpc runs without gevent support, so each call blocks the whole worker",
            "call grpc.experimental.gevent.init_gevent() in the app module, before any channel "
            "or server is made"),
    Blocker("pymssql", _is_itself("pymssql"),
            "pymssql waits for SQL Server in C (FreeTDS), so each query blocks the whole worker",
            "use python-tds (pytds, pure Python), or run the queries in gevent's threadpool"),
    Blocker("pylibmc", _is_itself("pylibmc"),
            "pylibmc waits for memcached in C (libmemcached), so each call blocks the whole "
            "worker", "use pymemcache (pure Python)"),
    Blocker("confluent_kafka", _is_itself("confluent_kafka"),
            "confluent_kafka waits in C (librdkafka): poll(), flush() and consume() with a "
            "timeout block the whole worker",
            "call them with timeout 0 from a greenlet that sleeps between calls, or run them in "
            "gevent's threadpool"),
)


def blocking_modules() -> List[str]:
    """A line for each module of BLOCKERS that is loaded and blocks."""
    lines = []
    for blocker in BLOCKERS:
        module = sys.modules.get(blocker.module)
        if module is None:
            continue
        try:
            blocks = blocker.blocks(module)
        except Exception:  # a module in a shape we do not know: no verdict
            blocks = False
        if blocks:
            lines.append(f"{blocker.problem}; fix: {blocker.fix}")
    return lines


_THREADING_FILE = os.path.realpath(threading.__file__)


def _own_dirs() -> Tuple[str, ...]:
    """This server's package and gevent's (whose threadpool and monitor are real threads)."""
    modules = [sys.modules[__package__], sys.modules.get("gevent")]
    return tuple(os.path.dirname(os.path.realpath(module.__file__)) + os.sep
                 for module in modules if module is not None and module.__file__)


def _entry(frame: Optional[FrameType]) -> Optional[FrameType]:
    """The outermost frame of a thread's stack outside threading.py: its target."""
    stack = []
    while frame is not None:
        stack.append(frame)
        frame = frame.f_back
    for candidate in reversed(stack):
        if os.path.realpath(candidate.f_code.co_filename) != _THREADING_FILE:
            return candidate
    return None


def _target_code(thread: Any) -> Optional[CodeType]:
    """What a threading.Thread runs (its target, or the run() of a subclass). Its stack does
    not tell once it waits in gevent: a thread started before the patching that calls a patched
    function (time.sleep) runs a hub of its own, and its current frame is the hub's."""
    target = getattr(thread, "_target", None)
    if target is None and thread is not None and type(thread).run is not threading.Thread.run:
        target = type(thread).run
    return getattr(target, "__code__", None)


def foreign_threads() -> List[str]:
    """A line for each real OS thread other than the calling one and those of gevent (its
    threadpool, its monitor) and of this server (the watchdog)."""
    me = original("_thread", "get_ident")()
    own = _own_dirs()
    active: Any = getattr(threading, "_active", {})  # native idents: threads from before patching
    lines = []
    for ident, frame in sorted(sys._current_frames().items()):
        if ident == me:
            continue
        thread = active.get(ident)
        code = _target_code(thread)
        if code is None:
            entry = _entry(frame)
            if entry is None:
                continue
            code = entry.f_code
        if os.path.realpath(code.co_filename).startswith(own):
            continue
        name = getattr(thread, "name", None) or f"ident {ident}"
        lines.append(
            f"a real OS thread ({name!r}, running {code.co_name} from "
            f"{code.co_filename}:{code.co_firstlineno}) runs beside the event "
            "loop: it was started before gevent patched threading (a post_fork hook?) or with "
            "the original thread API, and the locks, queues and sockets it shares with "
            "greenlets can block the worker; fix: start it once the worker has patched (in the "
            "app module or a post_worker_init hook), where it is a greenlet")
    return lines


_claimed: Any = None


def first_worker_of(config: Any) -> bool:
    """In the supervisor, as a worker is made: whether it is the first of its settings (its
    generation), the one that runs the audit, so that a start or a reload says it once."""
    global _claimed
    if config is _claimed:
        return False
    _claimed = config
    return True


def warn() -> int:
    """Log the audit's lines (WARNING); how many."""
    lines = blocking_modules() + foreign_threads()
    for line in lines:
        logs.error_log.warning("%s", line)
    return len(lines)
