"""Error log (time, level, pid) and access log (gunicorn's atoms, or JSON); neither may crash a
worker.

The two loggers are gunicorn's, ``gunicorn.error`` and ``gunicorn.access``, so that a gunicorn
logging config (logconfig.py) routes them, and an app that takes the handlers of
``logging.getLogger("gunicorn.error")`` finds the server's. The flags (--error-logfile,
--access-logfile) set up each logger that such a config leaves alone.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from . import logconfig

ERROR_FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S %z"
# gunicorn's default: the common log format plus referer and user agent.
DEFAULT_ACCESS_FORMAT = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"'

error_log = logging.getLogger("gunicorn.error")
access_log = logging.getLogger("gunicorn.access")

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


_file_owner: Optional[Tuple[int, int]] = None  # --user/--group of the workers


def set_file_owner(owner: Optional[Tuple[int, int]]) -> None:
    """The (uid, gid) that the log files opened from now on (and reopened on USR1) are given
    to, so that workers running as --user can reopen them; None: left as created."""
    global _file_owner
    _file_owner = owner


def _give(path: str) -> None:
    if _file_owner is not None and os.geteuid() == 0:
        try:
            os.chown(path, *_file_owner)
        except OSError:
            pass


class LogSetupError(OSError):
    """The logs cannot be set up as the settings say (a file that does not open, a logging
    config that does not apply); the message is one line."""


class _LeftAlone(logging.NullHandler):
    """Put on the server's loggers before a logging config is applied: still there after, the
    config did not name the logger, and the flags set it up."""


_LEFT_ALONE = _LeftAlone()


def _handler(target: str, stream: Any) -> logging.Handler:
    if target in ("-", ""):
        return logging.StreamHandler(stream)
    try:
        handler = logging.FileHandler(target, encoding="utf-8")
    except OSError as exc:
        raise LogSetupError(f"cannot open log file {target!r}: {exc.strerror}") from None
    _give(handler.baseFilename)
    return handler


def setup(loglevel: str = "info", errorlog: str = "-", accesslog: Optional[str] = None,
          access_format: str = DEFAULT_ACCESS_FORMAT, access_json: bool = False,
          capture_output: bool = False, logconfig_dict: Optional[Dict[str, Any]] = None,
          logconfig_json: Optional[str] = None, logconfig_ini: Optional[str] = None) -> None:
    """Point the error and access logs where the settings say; safe to call again
    (reconfigures). LogSetupError with one line."""
    global _access_writer
    logging.raiseExceptions = False  # a full disk must not turn into a traceback per request
    for logger in (error_log, access_log):
        for old in list(logger.handlers):
            logger.removeHandler(old)
            old.close()
        logger.propagate = False
        logger.addHandler(_LEFT_ALONE)
    error_log.setLevel(getattr(logging, loglevel.upper()))
    access_log.setLevel(logging.INFO)
    try:
        logconfig.apply(logconfig_dict, logconfig_json, logconfig_ini)
    except logconfig.LogConfigError as exc:
        raise LogSetupError(str(exc)) from None
    # Opened after the config: applying one closes every handler that exists.
    for logger, target, stream, fmt in ((error_log, errorlog, sys.stderr, ERROR_FORMAT),
                                        (access_log, accesslog, sys.stdout, "%(message)s")):
        if _LEFT_ALONE not in logger.handlers:
            continue  # the logging config set this logger up
        logger.removeHandler(_LEFT_ALONE)
        logger.propagate = False
        logger.disabled = False
        if target is not None:
            handler = _handler(target, stream)
            handler.setFormatter(logging.Formatter(fmt, DATE_FORMAT))
            logger.addHandler(handler)
    _access_writer = json_access_line if access_json else compile_access_format(access_format)
    global _access_shows_loop_block
    _access_shows_loop_block = not access_json and "K" in _KEY.findall(access_format)
    _capture(errorlog if capture_output and errorlog not in ("-", "") else None)


_capture_file: Optional[Any] = None


def _capture(path: Optional[str]) -> None:
    """--capture-output: the process's stdout and stderr write into the error log file (also
    when a logging config sends the error log elsewhere, as gunicorn does)."""
    global _capture_file
    old = _capture_file
    _capture_file = None
    if path is None:
        if old is not None:
            old.close()
        return
    try:
        fresh = open(path, "a", encoding="utf-8")  # noqa: SIM115 - fds 1 and 2 go on using it
    except OSError as exc:
        raise LogSetupError(f"cannot open log file {path!r}: {exc.strerror}") from None
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os.dup2(fresh.fileno(), 1)
    os.dup2(fresh.fileno(), 2)
    _capture_file = fresh
    if old is not None:
        old.close()


def _all_handlers() -> Iterator[logging.Handler]:
    """Every handler of every logger (the app's too), each once."""
    loggers = [logging.getLogger()] + [
        logger for logger in list(logging.Logger.manager.loggerDict.values())
        if isinstance(logger, logging.Logger)]
    seen = set()
    for logger in loggers:
        for handler in list(logger.handlers):
            if id(handler) not in seen:
                seen.add(id(handler))
                yield handler


def reopen() -> None:
    """Reopen the log files (USR1, after logrotate moved them): the file handlers of every
    logger, as gunicorn does, and the file --capture-output writes to."""
    for handler in _all_handlers():
        if not isinstance(handler, logging.FileHandler):
            continue
        handler.acquire()
        try:
            try:
                fresh = handler._open()  # first: if it fails, the old file is kept
            except OSError as exc:
                sys.stderr.write(f"geventserve: cannot reopen {handler.baseFilename}: "
                                 f"{exc.strerror}; still writing to the file it had\n")
                continue
            _give(handler.baseFilename)
            old, handler.stream = handler.stream, fresh
            if old is not None:
                old.close()
        finally:
            handler.release()
    if _capture_file is not None:
        try:
            _capture(_capture_file.name)
        except LogSetupError as exc:
            sys.stderr.write(f"geventserve: {exc}; still writing to the file it had\n")


def _chain(logger: logging.Logger) -> List[logging.Logger]:
    """The logger and those its records propagate to."""
    chain: List[logging.Logger] = []
    current: Optional[logging.Logger] = logger
    while current is not None:
        chain.append(current)
        current = current.parent if current.propagate else None  # type: ignore[assignment]
    return chain


def emergency(level: int, message: str) -> None:
    """Write to the error log without taking the handlers' locks (for the watchdog thread,
    while the main thread may hold them): stream handlers get the line written to their
    stream; the others (a logging config's syslog, statsd's counter) are called directly."""
    if error_log.disabled:
        return
    record = error_log.makeRecord(error_log.name, level, __file__, 0, message, (), None)
    for logger in _chain(error_log):
        for handler in list(logger.handlers):
            if level < handler.level or isinstance(handler, logging.NullHandler):
                continue
            try:
                if isinstance(handler, logging.StreamHandler):
                    stream = handler.stream
                    if stream is not None:
                        stream.write(handler.format(record) + "\n")
                        stream.flush()
                else:
                    handler.emit(record)
            except Exception:
                pass


def access_enabled() -> bool:
    """Whether an access-log line goes anywhere (--access-logfile, or a logging config)."""
    return access_log.isEnabledFor(logging.INFO) and access_log.hasHandlers()


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


