"""nginx for the tests: its config generated from examples/nginx.conf, run in the foreground."""

import os
import re
import shutil
import signal
import socket
import subprocess
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")
NGINX_CONF = os.path.join(EXAMPLES, "nginx.conf")
GEVENTSERVE_CONF = os.path.join(EXAMPLES, "geventserve.conf.py")
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
#: the listen directive of each server block in examples/nginx.conf
LISTEN = {"tcp": "listen 8080;", "unix": "listen 8081;", "tls": "listen 443 ssl;"}
#: the HTTPS server block, commented out in the example because it needs a certificate
TLS_SERVER = re.compile(r"^    #server \{\n(?:    #.*\n)*?    #\}\n", re.M)
TEMP_PATHS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


def render_nginx_conf(workdir, upstream_port, upstream_socket, ports, cert, key):
    """examples/nginx.conf with its HTTPS server enabled, its addresses replaced and everything
    it writes in ``workdir``.

    Each text replaced must occur exactly once in the example, so that an edit there fails here
    loudly instead of leaving a production path (/var/log, /run) in the test's nginx.
    """
    with open(NGINX_CONF) as fh:
        text = fh.read()
    blocks = TLS_SERVER.findall(text)
    assert len(blocks) == 1, "examples/nginx.conf: expected one commented-out HTTPS server"
    text = text.replace(blocks[0], re.sub(r"^    #", "    ", blocks[0], flags=re.M))
    temp_paths = "".join(f"    {name}_temp_path {workdir}/{name}_temp;\n" for name in TEMP_PATHS)
    replacements = [
        # nginx runs as root here: its workers would switch to www-data (or nobody), which may
        # not connect to geventserve's unix socket (a root-owned 0755 file in a 0700 tmp dir).
        # Not root: nginx cannot switch users anyway, and the line would only be a warning.
        ("user www-data;", "user root;" if os.geteuid() == 0 else ""),
        ("pid /run/nginx.pid;", f"pid {workdir}/nginx.pid;"),
        ("/var/log/nginx/error.log", f"{workdir}/error.log"),
        ("/var/log/nginx/geventserve.access.log", f"{workdir}/access.log"),
        ("http {\n", "http {\n" + temp_paths),
        ("server 127.0.0.1:8000;", f"server 127.0.0.1:{upstream_port};"),
        ("server unix:/run/geventserve.sock;", f"server unix:{upstream_socket};"),
        ("/etc/ssl/certs/ssl-cert-snakeoil.pem", cert),
        ("/etc/ssl/private/ssl-cert-snakeoil.key", key),
    ]
    for kind, directive in LISTEN.items():  # listen 8080; -> listen 127.0.0.1:PORT;
        replacements.append((directive, re.sub(r"\d+", f"127.0.0.1:{ports[kind]}", directive, count=1)))
    for old, new in replacements:
        count = text.count(old)
        assert count == 1, f"examples/nginx.conf has {old!r} {count} times, expected once"
        text = text.replace(old, new)
    directives = re.sub(r"#[^\n]*", "", text)
    outside = [p for p in re.findall(r"(?:(?<=\s)|(?<=unix:))/[\w./-]+", directives)
               if not p.startswith(f"{workdir}/")]
    assert not outside, f"paths outside the test's directory: {outside}"
    return text


def free_ports(count):
    """Ports free right now (bound to port 0, then closed); a collision later means a retry."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def listening_ports(pid):
    """TCP ports on which process ``pid`` itself holds a listening socket (from /proc).

    Being able to connect is not enough: the port may have been taken by another process.
    """
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            match = re.fullmatch(r"socket:\[(\d+)\]", os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            continue
        if match:
            inodes.add(match.group(1))
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as fh:
            for line in fh.readlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


class Nginx:
    """nginx in the foreground with its prefix, config, logs and temp files in ``workdir``."""

    def __init__(self, workdir, upstream_port, upstream_socket, cert, key):
        self.workdir = str(workdir)
        self.upstream = (upstream_port, upstream_socket, cert, key)
        self.conf = os.path.join(self.workdir, "nginx.conf")
        self.access_log = os.path.join(self.workdir, "access.log")
        self.error_log = os.path.join(self.workdir, "error.log")
        self.output = os.path.join(self.workdir, "nginx.out")
        self.proc = None
        self.ports = {}

    def start(self):
        """Start on free ports; another process taking one of them first means a new try."""
        upstream_port, upstream_socket, cert, key = self.upstream
        for attempt in range(5):
            self.ports = dict(zip(LISTEN, free_ports(len(LISTEN))))
            if os.path.exists(self.error_log):
                os.unlink(self.error_log)  # the log of the last try only
            with open(self.conf, "w") as fh:
                fh.write(render_nginx_conf(self.workdir, upstream_port, upstream_socket,
                                           self.ports, cert, key))
            if self._start():
                return self
            if "Address already in use" not in self.log or attempt == 4:
                raise AssertionError(f"nginx did not start; its log:\n{self.log}")
        return self

    def _start(self):
        with open(self.output, "wb") as out:
            self.proc = subprocess.Popen(
                [NGINX, "-p", self.workdir + "/", "-c", self.conf, "-e", "stderr",
                 "-g", "daemon off;"], stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if "Address already in use" in self.log:  # nginx would retry for 2.5 s: no need
                self.stop()
                return False
            if self.proc.poll() is not None:
                return False
            try:
                if set(self.ports.values()) <= listening_ports(self.proc.pid):
                    return True
            except OSError:  # gone meanwhile
                pass
            time.sleep(0.05)
        self.stop()
        raise AssertionError(f"nginx not listening within 10 s; its log:\n{self.log}")

    @property
    def log(self):
        text = ""
        for path in (self.output, self.error_log):
            try:
                with open(path, errors="replace") as fh:
                    text += fh.read()
            except FileNotFoundError:
                pass
        return text

    def access_lines(self):
        try:
            with open(self.access_log) as fh:
                return fh.read().splitlines()
        except FileNotFoundError:
            return []

    def stop(self):
        """TERM (nginx's fast stop), then KILL the process group: master and workers."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
