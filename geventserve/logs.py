"""Error log (time, level, pid) and access log (gunicorn's atoms, or JSON); neither may crash a
worker."""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

ERROR_FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S %z"
# gunicorn's default: the common log format plus referer and user agent.
DEFAULT_ACCESS_FORMAT = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"'

error_log = logging.getLogger("geventserve.error")
access_log = logging.getLogger("geventserve.access")

ATOMS = {
    "h": "remote address", "l": "'-'", "u": "user name (REMOTE_USER)", "t": "time of the request",
    "r": "request line", "m": "method", "U": "path", "q": "query string", "H": "protocol",
    "s": "status", "B": "response bytes", "b": "response bytes, or '-'", "f": "referer",
    "a": "user agent", "T": "duration (s)", "M": "duration (ms)", "D": "duration (us)",
    "L": "duration (decimal s)", "p": "pid",
    "K": "longest time the request held the event loop without yielding (decimal s; gevent "
         "workers, '-' otherwise)",
}
#: the environ key where the gevent worker leaves the K atom's figure (seconds)
LOOP_BLOCKED_KEY = "geventserve.loop_blocked"
_KEY = re.compile(r"%\((.*?)\)")
_HEADER_ATOM = re.compile(r"\{([^}]+)\}([ioe])")


def _handler(target: str, stream: Any) -> logging.Handler:
    if target in ("-", ""):
        return logging.StreamHandler(stream)
    return logging.FileHandler(target, encoding="utf-8")


def setup(loglevel: str = "info", errorlog: str = "-", accesslog: Optional[str] = None,
          access_format: str = DEFAULT_ACCESS_FORMAT, access_json: bool = False,
          capture_output: bool = False) -> None:
    """Point the error and access logs at their files; safe to call again (reconfigures)."""
    global _access_writer
    logging.raiseExceptions = False  # a full disk must not turn into a traceback per request
    handlers = []
    for target, stream in ((errorlog, sys.stderr), (accesslog, sys.stdout)):
        try:
            handlers.append(None if target is None else _handler(target, stream))
        except OSError as exc:
            raise OSError(f"cannot open log file {target!r}: {exc.strerror}") from None
    for logger, handler, fmt in ((error_log, handlers[0], ERROR_FORMAT),
                                 (access_log, handlers[1], "%(message)s")):
        for old in list(logger.handlers):
            logger.removeHandler(old)
            old.close()
        logger.propagate = False
        logger.disabled = handler is None
        if handler is not None:
            handler.setFormatter(logging.Formatter(fmt, DATE_FORMAT))
            logger.addHandler(handler)
    error_log.setLevel(getattr(logging, loglevel.upper()))
    access_log.setLevel(logging.INFO)
    _access_writer = json_access_line if access_json else compile_access_format(access_format)
    global _access_shows_loop_block
    _access_shows_loop_block = not access_json and "K" in _KEY.findall(access_format)
    global _capturing
    _capturing = capture_output and errorlog not in ("-", "")
    if _capturing:
        _capture(handlers[0])


_capturing = False


def _capture(handler: Any) -> None:
    """--capture-output: the process's stdout and stderr write into the error log file."""
    handler.stream.flush()
    os.dup2(handler.stream.fileno(), 1)
    os.dup2(handler.stream.fileno(), 2)


def reopen() -> None:
    """Reopen the log files (USR1, after logrotate moved them)."""
    for logger in (error_log, access_log):
        for handler in logger.handlers:
            if isinstance(handler, logging.FileHandler):
                handler.acquire()
                try:
                    try:
                        fresh = handler._open()  # first: if it fails, the old file is kept
                    except OSError as exc:
                        sys.stderr.write(f"geventserve: cannot reopen {handler.baseFilename}: "
                                         f"{exc.strerror}; still writing to the file it had\n")
                        continue
                    old, handler.stream = handler.stream, fresh
                    if old is not None:
                        old.close()
                    if _capturing and logger is error_log:
                        _capture(handler)
                finally:
                    handler.release()


def emergency(level: int, message: str) -> None:
    """Write to the error log without taking the handlers' locks (for the watchdog thread,
    while the main thread may hold them)."""
    record = error_log.makeRecord(error_log.name, level, __file__, 0, message, (), None)
    for handler in error_log.handlers:
        stream = getattr(handler, "stream", None)
        if stream is None:
            continue
        try:
            stream.write(handler.format(record) + "\n")
            stream.flush()
        except Exception:
            pass


def access_enabled() -> bool:
    return not access_log.disabled and bool(access_log.handlers)


_access_shows_loop_block = False


def access_shows_loop_block() -> bool:
    """Whether the access log format has the K atom (how long the event loop was held)."""
    return _access_shows_loop_block


# -- access log lines ----------------------------------------------------------------------

_clf_second = 0
_clf_text = ""


def _clf_time(now: float) -> str:
    global _clf_second, _clf_text
    second = int(now)
    if second != _clf_second:
        _clf_second = second
        _clf_text = time.strftime("[%d/%b/%Y:%H:%M:%S %z]", time.localtime(second))
    return _clf_text


def _request_line(environ: Dict[str, Any]) -> str:
    return "%s %s %s" % (environ.get("REQUEST_METHOD", "-"), environ.get("RAW_URI", "-"),
                         environ.get("SERVER_PROTOCOL", "-"))


def _header(headers: Sequence[Tuple[str, str]], name: str) -> str:
    for key, value in headers:
        if key.lower() == name:
            return value
    return "-"


_ATOM_VALUES: Dict[str, Callable[..., str]] = {
    "h": lambda env, status, sent, duration, headers: env.get("REMOTE_ADDR") or "-",
    "l": lambda env, status, sent, duration, headers: "-",
    "u": lambda env, status, sent, duration, headers: env.get("REMOTE_USER") or "-",
    "t": lambda env, status, sent, duration, headers: _clf_time(time.time()),
    "r": lambda env, status, sent, duration, headers: _request_line(env),
    "m": lambda env, status, sent, duration, headers: env.get("REQUEST_METHOD", "-"),
    "U": lambda env, status, sent, duration, headers: env.get("PATH_INFO", "-"),
    "q": lambda env, status, sent, duration, headers: env.get("QUERY_STRING", ""),
    "H": lambda env, status, sent, duration, headers: env.get("SERVER_PROTOCOL", "-"),
    "s": lambda env, status, sent, duration, headers: status.split(" ", 1)[0] if status else "-",
    "B": lambda env, status, sent, duration, headers: str(sent),
    "b": lambda env, status, sent, duration, headers: str(sent) if sent else "-",
    "f": lambda env, status, sent, duration, headers: env.get("HTTP_REFERER", "-"),
    "a": lambda env, status, sent, duration, headers: env.get("HTTP_USER_AGENT", "-"),
    "T": lambda env, status, sent, duration, headers: str(int(duration)),
    "M": lambda env, status, sent, duration, headers: str(int(duration * 1000)),
    "D": lambda env, status, sent, duration, headers: str(int(duration * 1_000_000)),
    "L": lambda env, status, sent, duration, headers: "%.6f" % duration,
    "p": lambda env, status, sent, duration, headers: "<%d>" % os.getpid(),
    "K": lambda env, status, sent, duration, headers: (
        "%.6f" % env[LOOP_BLOCKED_KEY] if LOOP_BLOCKED_KEY in env else "-"),
}


def _atom_value(key: str) -> Callable[..., str]:
    simple = _ATOM_VALUES.get(key)
    if simple is not None:
        return simple
    match = _HEADER_ATOM.fullmatch(key)
    if match is None:
        raise ValueError(f"unknown access log atom %({key})s: use "
                         + ", ".join(ATOMS) + ", {Header}i, {Header}o or {KEY}e")
    name, kind = match.group(1), match.group(2)
    if kind == "i":
        env_key = name.upper().replace("-", "_")
        if env_key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            env_key = "HTTP_" + env_key
        return lambda env, status, sent, duration, headers: env.get(env_key) or "-"
    if kind == "o":
        lower = name.lower()
        return lambda env, status, sent, duration, headers: _header(headers, lower)
    return lambda env, status, sent, duration, headers: str(env.get(name, "-"))


def compile_access_format(fmt: str) -> Callable[..., str]:
    """A function that renders one access-log line; ValueError for an unknown atom."""
    keys = list(dict.fromkeys(_KEY.findall(fmt)))
    getters = [(key, _atom_value(key)) for key in keys]
    try:
        fmt % dict.fromkeys(keys, "")
    except (TypeError, ValueError, KeyError) as exc:
        raise ValueError(f"the access log format is not a %-format with %(atom)s fields: "
                         f"{exc}") from None

    def render(environ: Dict[str, Any], status: str, sent: int, duration: float,
               headers: Sequence[Tuple[str, str]]) -> str:
        return fmt % {key: get(environ, status, sent, duration, headers) for key, get in getters}
    return render


def json_access_line(environ: Dict[str, Any], status: str, sent: int, duration: float,
                     headers: Sequence[Tuple[str, str]]) -> str:
    return json.dumps({
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "remote_addr": environ.get("REMOTE_ADDR") or None,
        "method": environ.get("REQUEST_METHOD"),
        "path": environ.get("PATH_INFO"),
        "query": environ.get("QUERY_STRING") or "",
        "protocol": environ.get("SERVER_PROTOCOL"),
        "status": int(status[:3]) if status else None,
        "bytes": sent,
        "duration_ms": round(duration * 1000, 3),
        "referer": environ.get("HTTP_REFERER"),
        "user_agent": environ.get("HTTP_USER_AGENT"),
        "pid": os.getpid(),
    }, separators=(",", ":"))


_access_writer: Callable[..., str] = compile_access_format(DEFAULT_ACCESS_FORMAT)


def log_access(environ: Dict[str, Any], status: Optional[str], sent: int, duration: float,
               headers: Sequence[Tuple[str, str]] = ()) -> None:
    """Write one access-log line; a failure is logged at debug level, never raised."""
    try:
        access_log.info(_access_writer(environ, status or "", sent, duration, headers))
    except Exception:
        error_log.debug("access log failed", exc_info=True)


