"""The one table of settings, and the Config that layers them: defaults < config file < env < CLI.

Each setting is declared once here; the command line (cli.py), the Python config file, the
GEVENTSERVE_CMD_ARGS variable and docs/settings.md are all derived from this table.
"""

from __future__ import annotations

import inspect
import ipaddress
import os
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

from . import logs, sockets

Validator = Callable[[Any], Any]


class SettingError(Exception):
    """A setting got a value it cannot take; the message names the setting and the value."""


# -- validators: each takes a value from the command line (a str) or a config file (any type)
#    and returns the normalised value, or raises ValueError saying what it expected.

def _shown_as(metavar: str) -> Callable[[Validator], Validator]:
    """Mark a validator with the name --help and the docs give its values (INT, SECONDS), for
    the settings that do not name them otherwise."""
    def mark(validate: Validator) -> Validator:
        validate.metavar = metavar  # type: ignore[attr-defined]
        return validate
    return mark


def _int(value: Any, minimum: Optional[int] = None, maximum: Optional[int] = None) -> int:
    if isinstance(value, bool):
        raise ValueError("expected an integer")
    if isinstance(value, str):
        text = value.strip()
        if not re.fullmatch(r"[+-]?\d+", text):
            raise ValueError("expected an integer")
        value = int(text)
    if not isinstance(value, int):
        raise ValueError("expected an integer")
    if minimum is not None and value < minimum:
        raise ValueError(f"expected an integer of at least {minimum}")
    if maximum is not None and value > maximum:
        raise ValueError(f"expected an integer of at most {maximum}")
    return value


@_shown_as("INT")
def positive_int(value: Any) -> int:
    return _int(value, minimum=1)


@_shown_as("INT")
def non_negative_int(value: Any) -> int:
    return _int(value, minimum=0)


@_shown_as("INT")
def optional_positive_int(value: Any) -> Optional[int]:
    if value is None:
        return None
    return _int(value, minimum=1)


def int_between(minimum: int, maximum: int) -> Validator:
    return _shown_as("INT")(lambda value: _int(value, minimum, maximum))


@_shown_as("SECONDS")
def non_negative_float(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("expected a number of seconds")
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise ValueError("expected a number of seconds") from None
    if not isinstance(value, (int, float)) or value != value or value < 0:
        raise ValueError("expected a number of seconds, 0 or more")
    return float(value)


@_shown_as("SECONDS")
def watchdog_timeout(value: Any) -> float:
    seconds = non_negative_float(value)
    if 0 < seconds < 1:
        raise ValueError("expected 0 (no check) or at least 1 second: the event loop beats "
                         "twice a second")
    return seconds


@_shown_as("SECONDS")
def positive_float(value: Any) -> float:
    seconds = non_negative_float(value)
    if seconds <= 0:
        raise ValueError("expected a number of seconds greater than 0")
    return seconds


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise ValueError("expected true or false")


def string(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("expected a string")
    return value


def optional_string(value: Any) -> Optional[str]:
    if value is None:
        return None
    return string(value)


def string_list(value: Any) -> List[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return list(value)
    raise ValueError("expected a string or a list of strings")


def metrics_address(value: Any) -> Optional[str]:
    if value is None:
        return None
    address = sockets.parse_address(string(value))
    if address.kind not in ("tcp", "unix"):
        raise ValueError("expected HOST:PORT or unix:PATH")
    return value


def bind_list(value: Any) -> List[str]:
    addresses = string_list(value)
    if not addresses:
        raise ValueError("expected at least one address")
    for address in addresses:
        sockets.parse_address(address)
    return addresses


LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


def log_level(value: Any) -> str:
    if isinstance(value, str) and value.strip().lower() in LOG_LEVELS:
        return value.strip().lower()
    raise ValueError("expected one of " + ", ".join(LOG_LEVELS))


def worker_class(value: Any) -> str:
    from .workers import WORKER_CLASSES, canonical_worker_class

    if not isinstance(value, str) or not value.strip():
        raise ValueError("expected a worker class: " + ", ".join(WORKER_CLASSES)
                         + " or a dotted path")
    return canonical_worker_class(value.strip())


def app_spec(value: Any) -> Optional[str]:
    if value is None:
        return None
    from .loading import parse_app_spec

    parse_app_spec(string(value))
    return value


def env_list(value: Any) -> List[str]:
    entries = string_list(value)
    for entry in entries:
        key, eq, _ = entry.partition("=")
        if not eq or not key or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise ValueError(f"{entry!r} is not KEY=VALUE")
    return entries


def ip_list(value: Any) -> List[str]:
    if isinstance(value, str):
        entries = [part.strip() for part in value.split(",") if part.strip()]
    else:
        entries = [str(part).strip() for part in string_list(value)]
    for entry in entries:
        if entry == "*":
            continue
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise ValueError(f"{entry!r} is not an IP address, a CIDR range such as "
                             "10.0.0.0/8, or *") from None
    return entries


def script_name(value: Any) -> str:
    text = string(value).rstrip("/")
    if text and not text.startswith("/"):
        raise ValueError("expected a path that starts with /, such as /app")
    return text


CERT_REQS = {"none": 0, "optional": 1, "required": 2}


def cert_reqs(value: Any) -> int:
    if isinstance(value, str) and value.strip().lower() in CERT_REQS:
        return CERT_REQS[value.strip().lower()]
    if isinstance(value, str) and value.strip() in ("0", "1", "2"):
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value in (0, 1, 2):
        return value
    raise ValueError("expected none, optional or required (or gunicorn's 0, 1, 2)")


def access_format(value: Any) -> str:
    logs.compile_access_format(string(value))
    return value


# -- logging configs and statsd (issue 11)

def optional_file(value: Any) -> Optional[str]:
    """A file named in the settings, made absolute (the supervisor may change directory)."""
    if value is None or value == "":
        return None
    return os.path.abspath(string(value))


def log_config_dict(value: Any) -> Dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError("expected a dict, as logging.config.dictConfig takes")
    return value


def statsd_host(value: Any) -> Optional[str]:
    from .statsd import parse_target

    if value is None or value == "":
        return None
    parse_target(value)
    return string(value)


def statsd_prefix(value: Any) -> str:
    from .statsd import check_name_part

    return check_name_part(value, "the statsd prefix", ":|@#")


def dogstatsd_tags(value: Any) -> str:
    from .statsd import check_name_part

    return check_name_part(value, "the dogstatsd tags", "|@#")


def hook(arity: int) -> Validator:
    """A validator for a server hook taking ``arity`` positional arguments."""
    def validate(value: Any) -> Any:
        if value is None:
            return None
        if not callable(value):
            raise ValueError("expected a function")
        try:
            inspect.signature(value).bind(*range(arity))
        except TypeError:
            raise ValueError(f"expected a function of {arity} argument(s)") from None
        except ValueError:
            pass  # no signature to inspect (a builtin): trust it
        return value
    validate.arity = arity  # type: ignore[attr-defined]
    return validate


@dataclass(frozen=True)
class Setting:
    """One setting: its config-file name, its flags, how to validate it, its default and help."""

    name: str
    section: str
    flags: Tuple[str, ...]
    validate: Validator
    default: Any
    help: str
    metavar: str = ""  # the validator's (INT, SECONDS) if not given
    action: str = "store"  # "store", "store_true" or "append" (for the command line)
    const: Any = None  # for a flag whose value may be left out: the value then
    default_doc: str = ""  # how the docs show a default that is computed at run time
    #: two different command-line values, for the docs and the table-driven settings test
    examples: Tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # The table writes help as indented prose: one line of text, single spaces.
        object.__setattr__(self, "help", " ".join(self.help.split()))
        if not self.metavar:
            object.__setattr__(self, "metavar", getattr(self.validate, "metavar", ""))


SERVER = "Server socket"
WORKERS = "Worker processes"
TIMEOUTS = "Timeouts"
LIMITS = "Request limits"
APP = "Application"
PROXY = "Behind a proxy"
TLS = "TLS"
PROCESS = "Process"
LOGGING = "Logging"
METRICS = "Metrics and monitoring"
HOOKS = "Server hooks"

SETTINGS: List[Setting] = [
    # -- server socket
    Setting("bind", SERVER, ("-b", "--bind"), bind_list, ["127.0.0.1:8000"], """
        Address to listen on: HOST:PORT, [V6ADDR]:PORT, unix:PATH or fd://N (an inherited
        listening socket). Repeat the flag to listen on several addresses.""",
        metavar="ADDRESS", action="append", examples=("127.0.0.1:9001", "unix:/tmp/gs.sock"),
        default_doc="127.0.0.1:8000, or 0.0.0.0:$PORT when the PORT variable is set"),
    Setting("backlog", SERVER, ("--backlog",), positive_int, 2048, """
        Length of the kernel queue of connections not yet accepted.""", examples=("64", "128")),
    Setting("reuse_port", SERVER, ("--reuse-port",), boolean, False, """
        Set SO_REUSEPORT on the listening sockets, so that another server (a new version started
        beside this one) can bind the same address.""", action="store_true"),
    # -- workers
    Setting("workers", WORKERS, ("-w", "--workers"), optional_positive_int, None, """
        Number of worker processes. The default is the number of CPU cores for gevent and 2 x
        cores + 1 for sync; the WEB_CONCURRENCY environment variable overrides it.""",
        default_doc="cores (gevent), 2 x cores + 1 (sync), or $WEB_CONCURRENCY",
        examples=("3", "5")),
    Setting("worker_class", WORKERS, ("-k", "--worker-class"), worker_class, "gevent", """
        Worker type: gevent (thousands of concurrent connections per process, for I/O-bound
        apps and WebSockets), sync (one request at a time, for CPU-bound apps), or a dotted path
        to a worker class. gunicorn's names for the same classes are accepted
        (egg:gunicorn#gevent, gunicorn.workers.ggevent.GeventWorker, gevent_wsgi, ...), and
        gevent-websocket's geventwebsocket.gunicorn.workers.GeventWebSocketWorker runs the
        gevent worker, which offers environ["wsgi.websocket"] whenever gevent-websocket is
        installed. Other servers' classes (gthread, eventlet, tornado, uvicorn's) are refused,
        saying what to use instead.""",
        metavar="CLASS", examples=("sync", "gevent")),
    Setting("worker_connections", WORKERS, ("--worker-connections",), positive_int, 1000, """
        Most connections one gevent worker serves at once; past it the worker stops accepting
        and new connections wait in the kernel backlog.""", examples=("50", "60")),
    Setting("max_requests", WORKERS, ("--max-requests",), non_negative_int, 0, """
        Replace a worker after it has answered this many requests (a new worker is ready before
        the old one stops accepting); 0 never replaces them. Bounds slow leaks.""",
        examples=("1000", "2000")),
    Setting("max_requests_jitter", WORKERS, ("--max-requests-jitter",), non_negative_int, 0, """
        Add a random 0..N to --max-requests per worker, so that workers are not all replaced at
        once.""", examples=("10", "20")),
    Setting("preload_app", WORKERS, ("--preload",), boolean, False, """
        Import the application in the supervisor before forking the workers: faster worker start
        and less memory (shared copy-on-write). With the gevent worker the supervisor patches
        the standard library first. HUP then restarts the workers without re-importing the code;
        use USR2 to load new code.""", action="store_true"),
    # -- timeouts
    Setting("timeout", TIMEOUTS, ("-t", "--timeout"), watchdog_timeout, 30.0, """
        When a worker's event loop is blocked (or, for sync, its request runs) this many
        seconds, its watchdog logs the request and the Python stack where it is stuck, then
        interrupts that request (it gets a 500, or a close if its response had started) and
        the worker is replaced gracefully, answering what was waiting; a block the interpreter
        cannot interrupt (C code holding the GIL) ends the worker at once. 0 disables the
        check.""", examples=("20", "40")),
    Setting("graceful_timeout", TIMEOUTS, ("--graceful-timeout",), non_negative_float, 30.0, """
        On TERM (or a reload), how long workers may take to finish the requests under way before
        they are killed.""", examples=("10", "15")),
    Setting("keepalive", TIMEOUTS, ("--keep-alive",), non_negative_float, 5.0, """
        Seconds an idle keep-alive connection is kept open; 0 closes every connection after its
        response.""", examples=("2", "75")),
    Setting("header_timeout", TIMEOUTS, ("--header-timeout",), positive_float, 10.0, """
        Seconds the whole request head (request line and header fields) may take to arrive once
        a request starts; a slower client gets 408 and the connection is closed.""",
        examples=("5", "20")),
    Setting("body_timeout", TIMEOUTS, ("--body-timeout",), positive_float, 30.0, """
        Seconds a request body may stall (or a client may stop reading the response) before the
        request ends with 408 or the connection is closed.""", examples=("60", "90")),
    # -- request limits
    Setting("limit_request_line", LIMITS, ("--limit-request-line",), int_between(0, 8190), 8190, """
        Longest request line in bytes (method, target and version), 0 to 8190; longer gets 414
        (400 when it is the method that makes it longer). 0 means the 8190 maximum. RFC 9112
        recommends taking at least 8000.""", examples=("4094", "8190")),
    Setting("limit_request_fields", LIMITS, ("--limit-request-fields",),
            int_between(0, 32768), 100, """
        Most header fields in a request, 0 to 32768; more gets 431. 0 means 32768.""",
        examples=("50", "200")),
    Setting("limit_request_field_size", LIMITS, ("--limit-request-field-size",),
            int_between(0, 65536), 8190, """
        Largest header field line in bytes (name, colon, value and CRLF, as gunicorn counts
        it), 0 to 65536; larger gets 431. It also bounds a chunk line of a chunked body (the
        size and its extensions: 400). 0 means 65536.""", examples=("4096", "16384")),
    # -- application
    Setting("wsgi_app", APP, (), app_spec, None, """
        The application, as MODULE:ATTRIBUTE, MODULE:FACTORY(ARGS) or MODULE (which looks for
        'application', then 'app'). Given as the positional argument on the command line.""",
        metavar="APP", examples=("pkg.wsgi:app", "factory:create()")),
    Setting("chdir", APP, ("--chdir",), string, "", """
        Change to this directory before loading the application.""",
        metavar="DIR", default_doc="the current directory", examples=("/srv/app", "/srv/other")),
    Setting("pythonpath", APP, ("--pythonpath",), string, "", """
        Comma-separated directories to add to the Python path before loading the application.""",
        metavar="DIRS", examples=("/srv/lib", "/srv/lib,/opt/lib")),
    Setting("raw_env", APP, ("-e", "--env"), env_list, [], """
        Set an environment variable for the application (KEY=VALUE); repeat the flag for
        several.""", metavar="KEY=VALUE", action="append", examples=("FOO=1", "BAR=two words")),
    Setting("root_path", APP, ("--root-path",), script_name, "", """
        SCRIPT_NAME for an app mounted under a URL prefix (for example /app); requests whose
        path starts with it get the rest as PATH_INFO. The SCRIPT_NAME environment variable sets
        it too.""",
        metavar="PATH", default_doc="$SCRIPT_NAME or empty", examples=("/app", "/api/v1")),
    Setting("reload", APP, ("--reload",), boolean, False, """
        Development: restart the workers when a source file of the app changes. Not with
        --preload.""", action="store_true"),
    Setting("reload_extra_files", APP, ("--reload-extra-file",), string_list, [], """
        A further file (a template, a config) whose change triggers --reload; repeat for
        several.""",
        metavar="FILE", action="append", examples=("templates/base.html", "settings.toml")),
    # -- proxy
    Setting("forwarded_allow_ips", PROXY, ("--forwarded-allow-ips",), ip_list,
            ["127.0.0.1", "::1"], """
        Peers trusted to set X-Forwarded-For (which then sets REMOTE_ADDR) and X-Forwarded-Proto
        / X-Forwarded-Ssl (which set wsgi.url_scheme): comma-separated addresses and CIDR
        ranges, or * for any. Connections over a unix socket are trusted. From other peers these
        headers change nothing.""", metavar="IPS", examples=("10.0.0.0/8", "*")),
    # -- TLS
    Setting("certfile", TLS, ("--certfile",), optional_string, None, """
        Serve HTTPS with this certificate (PEM); needs --keyfile unless the file holds both.""",
        metavar="FILE", examples=("/etc/ssl/a.pem", "/etc/ssl/b.pem")),
    Setting("keyfile", TLS, ("--keyfile",), optional_string, None, """
        The private key of --certfile (PEM).""",
        metavar="FILE", examples=("/etc/ssl/a.key", "/etc/ssl/b.key")),
    Setting("ca_certs", TLS, ("--ca-certs",), optional_string, None, """
        CA certificates (PEM) to verify client certificates with --cert-reqs.""",
        metavar="FILE", examples=("/etc/ssl/ca.pem", "/etc/ssl/ca2.pem")),
    Setting("cert_reqs", TLS, ("--cert-reqs",), cert_reqs, 0, """
        Client certificates: none, optional or required (gunicorn's 0, 1, 2 work too).""",
        metavar="WHEN", examples=("optional", "required")),
    # -- process
    Setting("pidfile", PROCESS, ("-p", "--pid"), optional_string, None, """
        Write the supervisor's PID to this file (removed on exit). A start refuses a file that
        names a geventserve still running; a stale one is replaced.""",
        metavar="FILE", examples=("/tmp/gs.pid", "/run/gs.pid")),
    Setting("proc_name", PROCESS, ("-n", "--name"), optional_string, None, """
        Name shown in process titles (geventserve: master [NAME]) when setproctitle is
        installed.""",
        metavar="NAME", default_doc="the application spec", examples=("shop", "api")),
    # -- logging
    Setting("loglevel", LOGGING, ("--log-level",), log_level, "info", """
        Error log level: debug, info, warning, error or critical. debug also shows the traceback
        of start-up errors and a line for each refused request.""",
        metavar="LEVEL", examples=("debug", "warning")),
    Setting("errorlog", LOGGING, ("--error-logfile", "--log-file"), string, "-", """
        Where to write the error log: a file, or - for standard error.""",
        metavar="FILE", examples=("/tmp/gs-error.log", "/tmp/gs-error2.log")),
    Setting("accesslog", LOGGING, ("--access-logfile",), optional_string, None, """
        Where to write the access log: a file, or - for standard output. Off by default.""",
        metavar="FILE", examples=("-", "/tmp/gs-access.log")),
    Setting("access_log_format", LOGGING, ("--access-logformat",), access_format,
            logs.DEFAULT_ACCESS_FORMAT, """
        Access log line, with gunicorn's atoms: h remote address, l '-', u user, t time, r
        request line, m method, U path, q query, H protocol, s status, B bytes, b bytes or '-',
        f referer, a user agent, T/M/D/L duration in s/ms/us/decimal s, p pid, {Header}i request
        header, {Header}o response header, {KEY}e environ value; and geventserve's K, the
        longest time the request held the event loop without yielding (decimal s).""",
        metavar="FORMAT", examples=("%(h)s %(s)s", "%(m)s %(U)s %(M)s")),
    Setting("access_log_json", LOGGING, ("--access-log-json",), boolean, False, """
        Write the access log as one JSON object per line instead of --access-logformat.""",
        action="store_true"),
    Setting("capture_output", LOGGING, ("--capture-output",), boolean, False, """
        Send the app's stdout and stderr (print, tracebacks of threads) to the error log file.""",
        action="store_true"),
    # -- logging configs and statsd, as gunicorn's (issue 11)
    Setting("logconfig", LOGGING, ("--logconfig", "--log-config"), optional_file, None, """
        A logging config file in the ini format of logging.config.fileConfig, as gunicorn's
        --log-config. The server logs to the loggers gunicorn.error and gunicorn.access; a
        logger the file does not name keeps --error-logfile or --access-logfile.""",
        metavar="FILE", examples=("/etc/gs/logging.ini", "/etc/gs/other.ini")),
    Setting("logconfig_dict", LOGGING, (), log_config_dict, {}, """
        Config file only: a dict for logging.config.dictConfig, laid over gunicorn's defaults
        (handlers console and error_console, formatter generic) as gunicorn does. Takes
        precedence over --log-config-json and --log-config.""",
        examples=({"loggers": {"gunicorn.access": {"level": "WARNING"}}},)),
    Setting("logconfig_json", LOGGING, ("--logconfig-json", "--log-config-json"), optional_file,
            None, """
        The same dict in a JSON file. Takes precedence over --log-config.""",
        metavar="FILE", examples=("/etc/gs/logging.json", "/etc/gs/other.json")),
    Setting("statsd_host", LOGGING, ("--statsd-host",), statsd_host, None, """
        Send gunicorn's statsd metrics (gunicorn.requests, gunicorn.request.duration,
        gunicorn.request.status.NNN, gunicorn.workers, gunicorn.log.*) to HOST:PORT over UDP
        (port 8125 if none is given) or to unix:PATH (a unix datagram socket). A metric is
        dropped rather than waited for; a host that does not resolve is a warning.""",
        metavar="ADDRESS", examples=("127.0.0.1:8125", "unix:/run/statsd.sock")),
    Setting("statsd_prefix", LOGGING, ("--statsd-prefix",), statsd_prefix, "", """
        Prefix of the statsd metric names (a dot is added after it, as gunicorn does).""",
        metavar="PREFIX", examples=("myapp", "shop.web")),
    Setting("dogstatsd_tags", LOGGING, ("--dogstatsd-tags",), dogstatsd_tags, "", """
        DogStatsD tags appended to every metric, comma-separated (env:prod,team:web).""",
        metavar="TAGS", examples=("env:prod", "env:test,team:web")),
    # -- metrics and monitoring
    Setting("metrics_bind", METRICS, ("--metrics-bind",), metrics_address, None, """
        Serve metrics from the supervisor on this address (HOST:PORT or unix:PATH): GET
        /metrics in Prometheus's text format (OpenMetrics when the scraper asks for it), summed
        over the workers, with the metrics of an app that uses prometheus_client in
        multiprocess mode; GET /status, the workers as JSON (geventserve status ADDRESS shows
        it as a table). Off by default; read at start (a reload keeps the endpoint).""",
        metavar="ADDRESS", examples=("127.0.0.1:9100", "unix:/run/gs-metrics.sock")),
    Setting("loop_block_warn", METRICS, ("--loop-block-warn",), non_negative_float, 0.5, """
        gevent workers: a request that holds the event loop this many seconds without
        yielding (CPU work, a blocking call gevent does not patch) gets a WARNING with the
        request, how long it blocked and the Python stack where it was blocking, at most one
        per worker every 5 seconds. 0 disables.""", examples=("0.2", "1")),
]

# -- issue 12: running in a fleet (health, drain, PROXY protocol, privileges, recycling)
FLEET = "Health and draining"
PROXY_PROTOCOL = "PROXY protocol"
PRIVILEGES = "Privileges"
RECYCLING = "Worker recycling"


def url_path(value: Any) -> Optional[str]:
    if value is None or value == "":
        return None
    text = string(value)
    if not text.startswith("/") or any(c.isspace() or c in "?#" for c in text):
        raise ValueError("expected a path that starts with /, such as /healthz (no query)")
    return text


PROXY_PROTOCOL_MODES = {"off": "off", "false": "off", "0": "off", "none": "off",
                        "v1": "v1", "v2": "v2", "auto": "auto", "true": "auto", "1": "auto"}


def proxy_protocol_mode(value: Any) -> str:
    if value is None or isinstance(value, bool):
        return "auto" if value else "off"
    if isinstance(value, str) and value.strip().lower() in PROXY_PROTOCOL_MODES:
        return PROXY_PROTOCOL_MODES[value.strip().lower()]
    raise ValueError("expected off, v1, v2 or auto (gunicorn's values; true means auto)")


def _account(value: Any, by_number: Callable[[int], Any], by_name: Callable[[str], Any],
             what: str) -> Optional[int]:
    """A user or group (``what``) given by name or number, as its number; it must exist."""
    if value is None:
        return None
    try:
        if isinstance(value, int) and not isinstance(value, bool):
            return by_number(value)[2]
        text = string(value).strip()
        return (by_number(int(text)) if text.isdigit() else by_name(text))[2]
    except (KeyError, OverflowError):
        raise ValueError(f"no such {what} on this system") from None


def user_id(value: Any) -> Optional[int]:
    import pwd

    return _account(value, pwd.getpwuid, pwd.getpwnam, "user")


def group_id(value: Any) -> Optional[int]:
    import grp

    return _account(value, grp.getgrgid, grp.getgrnam, "group")


@_shown_as("MASK")
def umask(value: Any) -> Optional[int]:
    """gunicorn's spellings: 18, 0o22, 022 (octal, as a shell writes it), 0x12."""
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"0\d+", text):
            text = "0o" + text[1:]
        try:
            value = int(text, 0)
        except ValueError:
            raise ValueError("expected a file mode mask such as 022 or 0o027") from None
    return _int(value, 0, 0o777)


@_shown_as("MiB")
def mebibytes(value: Any) -> int:
    return _int(value, minimum=0)


SETTINGS += [
    # -- health and draining
    Setting("liveness_path", FLEET, ("--liveness-path",), url_path, None, """
        Answer GET (or HEAD) requests for exactly this path with 200 from the worker itself,
        without calling the app, while that worker's event loop runs: for liveness probes.
        Off by default.""", metavar="PATH", examples=("/livez", "/healthz")),
    Setting("readiness_path", FLEET, ("--readiness-path",), url_path, None, """
        Answer requests for exactly this path from the worker itself: 200 while the server
        serves, 503 from the moment a stop or a --drain-delay begins: for readiness probes and
        load-balancer health checks. Off by default.""",
        metavar="PATH", examples=("/readyz", "/ready")),
    Setting("log_health_checks", FLEET, ("--log-health-checks",), boolean, False, """
        Write the answers to --liveness-path and --readiness-path to the access log too (they
        are left out by default).""", action="store_true"),
    Setting("drain_delay", FLEET, ("--drain-delay",), non_negative_float, 0.0, """
        On TERM, first answer --readiness-path with 503 and keep accepting and serving for
        this many seconds, every response with Connection: close so that clients and load
        balancers move their connections to other hosts; then stop gracefully. A second TERM
        ends the delay early, INT or QUIT stop at once. On Kubernetes it replaces a preStop
        sleep.""", examples=("10", "2.5")),
    # -- PROXY protocol
    Setting("proxy_protocol", PROXY_PROTOCOL, ("--proxy-protocol",), proxy_protocol_mode, "off",
            """
        Expect a PROXY protocol header (HAProxy's send-proxy / send-proxy-v2, AWS NLB,
        stunnel) first on every connection from a peer in --proxy-allow-from (and over unix
        sockets), before the HTTP or TLS bytes: REMOTE_ADDR and REMOTE_PORT then come from it.
        off, v1, v2 or auto (either); the flag alone means auto. A trusted peer that sends no
        valid header within --header-timeout is disconnected.""",
        metavar="MODE", const="auto", examples=("v1", "auto")),
    Setting("proxy_allow_ips", PROXY_PROTOCOL, ("--proxy-allow-from",), ip_list,
            ["127.0.0.1", "::1"], """
        Peers that send a PROXY protocol header (with --proxy-protocol): comma-separated
        addresses and CIDR ranges, or * for any. Peers over a unix socket always do. Others
        are served as plain HTTP.""", metavar="IPS", examples=("10.0.0.0/8", "*")),
    # -- privileges
    Setting("user", PRIVILEGES, ("-u", "--user"), user_id, None, """
        Run the workers as this user (a name or a number). The supervisor binds the sockets
        and opens the log files first, as the user that started it (root, for a port below
        1024), and stays that user; the log files and unix sockets it creates are given to
        this user.""", metavar="USER", default_doc="unchanged", examples=("nobody", "0")),
    Setting("group", PRIVILEGES, ("-g", "--group"), group_id, None, """
        Run the workers as this group (a name or a number).""",
        metavar="GROUP", default_doc="the --user's own group, else unchanged",
        examples=("nogroup", "0")),
    Setting("umask", PRIVILEGES, ("-m", "--umask"), umask, None, """
        The file mode mask of the server's processes (for the unix sockets and files they
        create): 022, 0o027, 18 or 0x12.""", default_doc="unchanged", examples=("022", "0o27")),
    Setting("initgroups", PRIVILEGES, ("--initgroups",), boolean, False, """
        Give the workers the supplementary groups of --user (from /etc/group); without it they
        have none but --group.""", action="store_true"),
    # -- recycling
    Setting("max_worker_memory", RECYCLING, ("--max-worker-memory",), mebibytes, 0, """
        Replace a worker whose resident memory passes this many MiB (a new worker is ready
        before the old one stops accepting; one worker at a time); 0 never does. Bounds memory
        that creeps.""", examples=("512", "1024")),
    Setting("max_worker_lifetime", RECYCLING, ("--max-worker-lifetime",), non_negative_float,
            0.0, """
        Replace a worker once it has run this many seconds (plus its
        --max-worker-lifetime-jitter); 0 never does.""", examples=("3600", "86400")),
    Setting("max_worker_lifetime_jitter", RECYCLING, ("--max-worker-lifetime-jitter",),
            non_negative_float, 0.0, """
        Add a random 0..N seconds to --max-worker-lifetime per worker, so that workers started
        together are not all replaced together.""", examples=("60", "600")),
]

# -- server hooks: functions in the config file, called at gunicorn's points with gunicorn's
#    arguments. `server` is the Supervisor, `worker` a Worker, `req` a HookRequest,
#    `resp` a HookResponse (see docs/settings.md for their attributes). Each one's signature,
#    then what it is for (an indented line goes on); its name and arity come from the signature.
HOOKS_HELP = """
on_starting(server): before the listeners are opened.
on_reload(server): on HUP, before the new workers start.
when_ready(server): the listeners are open, the first workers about to start.
pre_fork(server, worker): in the supervisor, just before a worker is forked.
post_fork(server, worker): in the worker, just after the fork (before the gevent patching and
    the app import).
post_worker_init(worker): in the worker, once the app is loaded.
worker_int(worker): in the worker, on INT or QUIT (fast stop).
worker_abort(worker): in the worker (its watchdog thread), when the event loop has been blocked
    for --timeout: before the blocked request is interrupted, or the worker ended.
pre_request(worker, req): in the worker, before the app is called.
post_request(worker, req, environ, resp): in the worker, after the response is sent.
child_exit(server, worker): in the supervisor, after a worker exited.
worker_exit(server, worker): in the worker, just before it exits.
nworkers_changed(server, new_value, old_value): the wanted number of workers changed (TTIN,
    TTOU, a reload; old_value is None at start).
on_exit(server): just before the supervisor exits.
pre_exec(server): in the process that re-executes the server (USR2), just before the exec.
ssl_context(config, default_ssl_context_factory): in each worker, returns the SSLContext to
    serve HTTPS with; call the factory for the one geventserve would use and adjust it (ciphers,
    ALPN, SNI).
"""


def _hooks(text: str) -> List[Tuple[str, int, str]]:
    entries = text.strip().replace("\n    ", " ").splitlines()
    return [(entry.partition("(")[0], entry.partition(")")[0].count(",") + 1, entry)
            for entry in entries]


SETTINGS += [Setting(name, HOOKS, (), hook(arity), None, text)
             for name, arity, text in _hooks(HOOKS_HELP)]
HOOK_NAMES = [name for name, _, _ in _hooks(HOOKS_HELP)]

BY_NAME: Dict[str, Setting] = {s.name: s for s in SETTINGS}
SECTIONS: List[str] = list(dict.fromkeys(s.section for s in SETTINGS))


def cpu_count() -> int:
    """Cores this process may run on (respects taskset and cgroup affinity)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


@dataclass
class Config:
    """The effective settings; each value remembers where it came from."""

    values: Dict[str, Any] = field(default_factory=dict)
    sources: Dict[str, str] = field(default_factory=dict)
    file: Optional[str] = None  # the config file read (absolute path), if any

    def __post_init__(self) -> None:
        for setting in SETTINGS:
            if setting.name not in self.values:
                default = setting.default
                self.values[setting.name] = list(default) if isinstance(default, list) else default
                self.sources[setting.name] = "default"
        port = os.environ.get("PORT", "").strip()
        if port.isdigit() and int(port) <= 65535:  # as gunicorn (Heroku-style platforms)
            self.values["bind"] = [f"0.0.0.0:{port}"]

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["values"][name]
        except KeyError:
            raise AttributeError(name) from None

    def set(self, name: str, value: Any, source: str) -> None:
        """Validate and set one setting; raise SettingError naming the setting and the value."""
        setting = BY_NAME.get(name)
        if setting is None:
            raise SettingError(f"unknown setting {name!r}")
        try:
            self.values[name] = setting.validate(value)
        except ValueError as exc:
            if name == "wsgi_app":
                raise SettingError(f"invalid application {value!r} ({source}): {exc}") from None
            flag = setting.flags[-1] if setting.flags else name
            where = name if source != "command line" else flag
            raise SettingError(f"invalid value {value!r} for {where} ({source}): {exc}") from None
        self.sources[name] = source

    def check(self) -> None:
        """Rules that involve several settings; SettingError with one line."""
        from .tls import check_files

        if self.values["reload"] and self.values["preload_app"]:
            raise SettingError("--reload cannot be used with --preload: preloaded code is "
                               "imported once, by the supervisor; drop one of the two")
        problems = check_files(self.values["certfile"], self.values["keyfile"],
                               self.values["ca_certs"])
        if problems:
            raise SettingError(problems[0])
        if self.values["proxy_protocol"] != "off" and not self.values["proxy_allow_ips"]:
            raise SettingError("--proxy-protocol needs the peers that send the header in "
                               "--proxy-allow-from (addresses, CIDR ranges or *)")
        health = (self.values["liveness_path"], self.values["readiness_path"])
        if health[0] is not None and health[0] == health[1]:
            raise SettingError("--liveness-path and --readiness-path must differ: a stop turns "
                               "readiness to 503 but never liveness")
        try:
            self.script_name  # noqa: B018 - validates $SCRIPT_NAME
        except ValueError as exc:
            raise SettingError(f"invalid SCRIPT_NAME in the environment: {exc}") from None

    def items(self) -> Iterator[Tuple[str, Any]]:
        for setting in SETTINGS:
            yield setting.name, self.values[setting.name]

    # -- values derived from several settings
    @property
    def worker_count(self) -> int:
        if self.values["workers"] is not None:
            return self.values["workers"]
        env = os.environ.get("WEB_CONCURRENCY", "").strip()
        if env:
            try:
                return positive_int(env)
            except ValueError:
                raise SettingError(f"invalid value {env!r} for WEB_CONCURRENCY: expected a "
                                   "positive integer") from None
        cores = cpu_count()
        return cores if self.values["worker_class"] != "sync" else 2 * cores + 1

    @property
    def script_name(self) -> str:
        if self.sources.get("root_path") != "default":
            return self.values["root_path"]
        return script_name(os.environ.get("SCRIPT_NAME", ""))

    @property
    def request_line_limit(self) -> int:
        return self.values["limit_request_line"] or 8190

    @property
    def request_fields_limit(self) -> int:
        return self.values["limit_request_fields"] or 32768

    @property
    def request_field_size_limit(self) -> int:
        return self.values["limit_request_field_size"] or 65536
