"""nginx run for real from examples/nginx.conf: the config rendered exactly, nginx in the
foreground on free loopback ports, everything it writes in one directory."""

from __future__ import annotations

import os
import re
import shutil
import time
from typing import Dict, List, Mapping, Optional, Sequence

from harness import EXAMPLES
from harness.machine import program_version
from harness.ports import free_ports
from harness.process import Process, ProcessError, ProcessOwner
from harness.procfs import listening_ports

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
NGINX_CONF = os.path.join(EXAMPLES, "nginx.conf")
#: the listen directive of each server block in examples/nginx.conf
LISTEN = {"tcp": "listen 8080;", "unix": "listen 8081;", "tls": "listen 443 ssl;"}
#: the HTTPS server block, commented out in the example because it needs a certificate
TLS_SERVER = re.compile(r"^    #server \{\n(?:    #.*\n)*?    #\}\n", re.M)
TEMP_PATHS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
ACCESS_LOG = "access_log /var/log/nginx/geventserve.access.log upstream;"


def render_nginx_conf(workdir: str, upstream_port: int, upstream_socket: str,
                      ports: Mapping[str, int], cert: Optional[str] = None,
                      key: Optional[str] = None, *, access_log: bool = True,
                      servers: Sequence[str] = ()) -> str:
    """examples/nginx.conf listening on 127.0.0.1 at ``ports`` (by LISTEN kind), proxying to
    geventserve at ``upstream_port`` and ``upstream_socket``, with its error log on stderr and
    everything it writes in ``workdir``; its HTTPS server enabled if given ``cert`` and ``key``,
    no access log if ``access_log`` is false. Given ``servers`` (each ``ADDRESS [PARAMETERS]``
    of an upstream ``server`` line), its TCP upstream is those servers instead (a fleet).

    Each text replaced must occur exactly once in the example, so that an edit there fails here
    loudly instead of leaving a production path (/var/log, /run) in the test's nginx.
    """
    with open(NGINX_CONF) as fh:
        text = fh.read()
    replacements = [
        # nginx runs as root here: its workers would switch to www-data (or nobody), which may
        # not connect to geventserve's unix socket (a root-owned 0755 file in a 0700 tmp dir).
        # Not root: nginx cannot switch users anyway, and the line would only be a warning.
        ("user www-data;", "user root;" if os.geteuid() == 0 else ""),
        ("pid /run/nginx.pid;", f"pid {workdir}/nginx.pid;"),
        ("/var/log/nginx/error.log", "stderr"),
        (ACCESS_LOG, ACCESS_LOG.replace("/var/log/nginx/geventserve.access.log",
                                        f"{workdir}/access.log") if access_log
         else "access_log off;"),
        ("http {\n", "http {\n" + "".join(f"    {name}_temp_path {workdir}/{name}_temp;\n"
                                          for name in TEMP_PATHS)),
        ("server 127.0.0.1:8000;", "\n        ".join(f"server {server};" for server in servers)
         if servers else f"server 127.0.0.1:{upstream_port};"),
        ("server unix:/run/geventserve.sock;", f"server unix:{upstream_socket};"),
    ]
    if cert and key:
        blocks = TLS_SERVER.findall(text)
        if len(blocks) != 1:
            raise ValueError("examples/nginx.conf: expected one commented-out HTTPS server")
        text = text.replace(blocks[0], re.sub(r"^    #", "    ", blocks[0], flags=re.M))
        replacements += [("/etc/ssl/certs/ssl-cert-snakeoil.pem", cert),
                         ("/etc/ssl/private/ssl-cert-snakeoil.key", key)]
    for kind, port in ports.items():  # listen 8080; -> listen 127.0.0.1:PORT;
        replacements.append((LISTEN[kind], re.sub(r"\d+", f"127.0.0.1:{port}", LISTEN[kind],
                                                  count=1)))
    for old, new in replacements:
        count = text.count(old)
        if count != 1:
            raise ValueError(f"examples/nginx.conf has {old!r} {count} times, expected once")
        text = text.replace(old, new)
    directives = re.sub(r"#[^\n]*", "", text)
    outside = [p for p in re.findall(r"(?:(?<=\s)|(?<=unix:))/[\w./-]+", directives)
               if not p.startswith(f"{workdir}/")]
    if outside:
        raise ValueError(f"paths outside {workdir}: {outside}")
    return text


class Nginx(ProcessOwner):
    """nginx in the foreground from examples/nginx.conf (see render_nginx_conf), with its
    prefix, config, pid, temp files and access log in ``workdir``; its output (the error log)
    goes to ``log`` (default ``workdir``/nginx.out). ``stop()``: TERM (nginx's fast stop), then
    KILL to its process group, master and workers. ``ports`` maps each server block's kind
    (tcp, unix, and tls when given a certificate) to the port it listens on; ``servers``, if
    given, replace the TCP upstream (see render_nginx_conf)."""

    def __init__(self, workdir: str, upstream_port: int, upstream_socket: str,
                 cert: Optional[str] = None, key: Optional[str] = None, *,
                 log: Optional[str] = None, access_log: bool = True,
                 servers: Sequence[str] = ()) -> None:
        self.workdir = str(workdir)
        self.upstream = (upstream_port, str(upstream_socket))
        self.servers = list(servers)
        self.certificate = (cert, key)
        self.kinds = [kind for kind in LISTEN if kind != "tls" or (cert and key)]
        self.with_access_log = access_log
        self.conf = os.path.join(self.workdir, "nginx.conf")
        self.access_log = os.path.join(self.workdir, "access.log")
        self.output = str(log) if log else os.path.join(self.workdir, "nginx.out")
        self.process: Optional[Process] = None
        self.ports: Dict[str, int] = {}

    def start(self) -> Nginx:
        """Start on free ports; another process taking one of them first means a new try."""
        for attempt in range(5):
            self.ports = dict(zip(self.kinds, free_ports(len(self.kinds))))
            try:
                text = render_nginx_conf(self.workdir, *self.upstream, self.ports,
                                         *self.certificate, access_log=self.with_access_log,
                                         servers=self.servers)
            except ValueError as exc:
                raise ProcessError(f"nginx: {exc}")
            with open(self.conf, "w") as fh:
                fh.write(text)
            self.process = Process([NGINX, "-p", self.workdir + "/", "-c", self.conf, "-e",
                                    "stderr", "-g", "daemon off;"], name="nginx",
                                   cwd=self.workdir, log=self.output, stop_timeout=5).start()
            if self._listening():
                return self
            if "Address already in use" not in self.log or attempt == 4:
                raise ProcessError(f"nginx did not start; {self.process.log_excerpt()}")
        return self

    def _listening(self, timeout: float = 10.0) -> bool:
        """True once nginx itself listens on all its ports; False if it exited or found a port
        taken; raises if neither happens within ``timeout``."""
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "Address already in use" in self.log:  # nginx would retry for 2.5 s: no need
                self.process.stop()
                return False
            if self.process.exited() is not None:
                return False
            try:
                if set(self.ports.values()) <= listening_ports(self.process.pid):
                    return True
            except OSError:  # gone meanwhile
                pass
            time.sleep(0.05)
        self.process.stop()
        raise ProcessError(f"nginx not listening within {timeout:g} s; "
                           f"{self.process.log_excerpt()}")

    @property
    def pid(self) -> int:
        assert self.process is not None, "nginx not started"
        return self.process.pid

    @property
    def log(self) -> str:
        return self.process.log if self.process else ""

    def access_lines(self) -> List[str]:
        try:
            with open(self.access_log) as fh:
                return fh.read().splitlines()
        except FileNotFoundError:
            return []



def nginx_version() -> str:
    """``nginx 1.22.1``, from ``nginx -v`` (``nginx ?`` if it cannot tell)."""
    return program_version("nginx", [NGINX, "-v"], r"nginx/(\S+)")
