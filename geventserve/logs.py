"""Error log (time, level, pid) and access log (gunicorn's atoms); neither may crash a worker."""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any, Dict, Optional

ERROR_FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S %z"
# gunicorn's default: the common log format plus referer and user agent.
DEFAULT_ACCESS_FORMAT = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"'

error_log = logging.getLogger("geventserve.error")
access_log = logging.getLogger("geventserve.access")


def _handler(target: str, stream: Any) -> logging.Handler:
    if target in ("-", ""):
        return logging.StreamHandler(stream)
    return logging.FileHandler(target, encoding="utf-8")


def setup(loglevel: str = "info", errorlog: str = "-", accesslog: Optional[str] = None) -> None:
    """Point the error and access logs at their files; safe to call again (reconfigures)."""
    logging.raiseExceptions = False  # a full disk must not turn into a traceback per request
    for logger, target, fmt, stream in (
        (error_log, errorlog, ERROR_FORMAT, sys.stderr),
        (access_log, accesslog, "%(message)s", sys.stdout),
    ):
        for old in list(logger.handlers):
            logger.removeHandler(old)
            old.close()
        logger.propagate = False
        if target is None:
            logger.disabled = True
            continue
        logger.disabled = False
        try:
            handler = _handler(target, stream)
        except OSError as exc:
            raise OSError(f"cannot open log file {target!r}: {exc.strerror}") from None
        handler.setFormatter(logging.Formatter(fmt, DATE_FORMAT))
        logger.addHandler(handler)
    error_log.setLevel(getattr(logging, loglevel.upper()))
    access_log.setLevel(logging.INFO)


def reopen() -> None:
    """Reopen the log files (USR1, after logrotate moved them)."""
    for logger in (error_log, access_log):
        for handler in logger.handlers:
            if isinstance(handler, logging.FileHandler):
                handler.acquire()
                try:
                    if handler.stream is not None:
                        handler.stream.close()
                    handler.stream = handler._open()
                except OSError as exc:
                    sys.stderr.write(f"geventserve: cannot reopen {handler.baseFilename}: "
                                     f"{exc.strerror}\n")
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


def _clf_time(now: float) -> str:
    return time.strftime("[%d/%b/%Y:%H:%M:%S %z]", time.localtime(now))


def access_atoms(environ: Dict[str, Any], status: str, sent: int,
                 duration: float) -> Dict[str, str]:
    """The values of gunicorn's access-log atoms for one request."""
    request_line = "%s %s %s" % (environ.get("REQUEST_METHOD", "-"), environ.get("RAW_URI", "-"),
                                 environ.get("SERVER_PROTOCOL", "-"))
    return {
        "h": environ.get("REMOTE_ADDR") or "-",
        "l": "-",
        "u": environ.get("REMOTE_USER") or "-",
        "t": _clf_time(time.time()),
        "r": request_line,
        "s": status.split(" ", 1)[0] if status else "-",
        "m": environ.get("REQUEST_METHOD", "-"),
        "U": environ.get("PATH_INFO", "-"),
        "q": environ.get("QUERY_STRING", ""),
        "H": environ.get("SERVER_PROTOCOL", "-"),
        "b": str(sent) if sent else "-",
        "B": str(sent),
        "f": environ.get("HTTP_REFERER", "-"),
        "a": environ.get("HTTP_USER_AGENT", "-"),
        "T": str(int(duration)),
        "M": str(int(duration * 1000)),
        "D": str(int(duration * 1_000_000)),
        "L": "%.6f" % duration,
        "p": "<%d>" % os.getpid(),
    }


def log_access(environ: Dict[str, Any], status: str, sent: int, duration: float) -> None:
    """Write one access-log line; any failure is swallowed (reported once on the error log)."""
    try:
        access_log.info(DEFAULT_ACCESS_FORMAT % access_atoms(environ, status, sent, duration))
    except Exception:
        error_log.debug("access log failed", exc_info=True)
