"""PostgreSQL and Redis for the benchmark and the tests, each started for the run and stopped.

``postgresql()`` makes a cluster with Debian's ``initdb`` (under /usr/lib/postgresql/*/bin, not
on PATH) in a temporary directory and runs ``postgres`` on a unix socket there only (no TCP),
as the ``postgres`` user when this runs as root; ``redis()`` runs Debian's ``redis-server`` on a
unix socket in a temporary directory (no TCP, no persistence), as the ``redis`` user when root.
Both yield once the server answers, and stop it by PID when the block ends, however it ends
(harness.process.Process: its own process group); the child also gets SIGKILL if this process
dies first (PR_SET_PDEATHSIG), so a killed run leaves no server behind. ``databases()`` starts
both and yields the environment the app reads (DATABASE_URL, REDIS_URL).

The benchmark's cluster trades durability for steadiness (fsync and synchronous_commit off,
set by ``durable=False``): the disk of a shared machine is not what is measured.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional

from harness.process import Process, die_with_parent

PG_PORT = 5432  # names the socket file (.s.PGSQL.5432) in a directory of our own


@dataclass
class Postgres:
    """A running cluster: its socket directory, superuser and database; ``conninfo`` for libpq."""

    socket_dir: str
    user: str
    dbname: str
    process: Process

    @property
    def conninfo(self) -> str:
        return f"host={self.socket_dir} port={PG_PORT} user={self.user} dbname={self.dbname}"


@dataclass
class Redis:
    """A running redis-server: its unix socket; ``url`` for redis-py."""

    socket_path: str
    process: Process

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"


def postgres_bin(program: str) -> str:
    """``program`` of the newest PostgreSQL Debian installed (/usr/lib/postgresql/N/bin)."""
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{program}"),
                   key=lambda path: int(path.split("/")[4]) if path.split("/")[4].isdigit() else 0)
    if found:
        return found[-1]
    on_path = shutil.which(program)
    if on_path:
        return on_path
    raise FileNotFoundError(f"{program} not found (Debian's postgresql package provides it)")


def _as_user(name: str) -> Dict[str, Any]:
    """Popen arguments that run the child as ``name`` when this process is root (else as
    ourselves), with SIGKILL when this process dies."""
    options: Dict[str, Any] = {"preexec_fn": die_with_parent}
    if os.geteuid() == 0:
        entry = pwd.getpwnam(name)
        options.update(user=entry.pw_uid, group=entry.pw_gid, extra_groups=[])
    return options


def _own_dir(path: str, name: str) -> None:
    """``path`` owned by ``name`` when we are root; readable and traversable by everyone (the
    socket in it is for the servers under test)."""
    if os.geteuid() == 0:
        entry = pwd.getpwnam(name)
        os.chown(path, entry.pw_uid, entry.pw_gid)
    os.chmod(path, 0o755)


@contextlib.contextmanager
def postgresql(max_connections: int = 200, durable: bool = False, user: str = "bench",
               timeout: float = 60.0, cpus: Optional[str] = None,
               log: Optional[str] = None) -> Iterator[Postgres]:
    """A new cluster in a temporary directory, served on a unix socket there, until the block
    ends (then fast shutdown, by PID, and the directory removed). ``user`` is its superuser
    (trust authentication: only the socket's directory reaches it); the database is
    ``postgres``. ``cpus`` pins it (taskset's list); ``log`` is where its output goes (default:
    a file in the temporary directory)."""
    owner = "postgres"
    top = tempfile.mkdtemp(prefix="bench-pg-")
    try:
        data, sockets = os.path.join(top, "data"), os.path.join(top, "run")
        os.chmod(top, 0o755)
        for path in (data, sockets):
            os.mkdir(path)
            _own_dir(path, owner)
        os.chmod(data, 0o700)
        subprocess.run([postgres_bin("initdb"), "-D", data, "-U", user, "--auth=trust",
                        "--no-sync", "-E", "UTF8", "--locale=C"], check=True, capture_output=True,
                       timeout=timeout, cwd=top, **_as_user(owner))
        settings = {"listen_addresses": "", "unix_socket_directories": sockets,
                    "port": str(PG_PORT), "max_connections": str(max_connections),
                    "shared_buffers": "128MB", "logging_collector": "off"}
        if not durable:
            settings.update(fsync="off", synchronous_commit="off", full_page_writes="off")
        command = [postgres_bin("postgres"), "-D", data]
        for name, value in settings.items():
            command += ["-c", f"{name}={value}"]
        if cpus:
            command = ["taskset", "-c", cpus] + command
        process = Process(command, name="postgres", cwd=top, stop_signal=signal.SIGINT,
                          stop_timeout=20, log=log or os.path.join(top, "postgres.log"),
                          **_as_user(owner))
        with process.start():
            isready = [postgres_bin("pg_isready"), "-q", "-h", sockets, "-p", str(PG_PORT),
                       "-U", user, "-d", "postgres", "-t", "1"]
            process.wait_ready(lambda: subprocess.run(isready, timeout=10).returncode == 0,
                               timeout)
            yield Postgres(sockets, user, "postgres", process)
    finally:
        shutil.rmtree(top, ignore_errors=True)


def _redis_ping(path: str) -> bool:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(1.0)
            sock.connect(path)
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@contextlib.contextmanager
def redis(timeout: float = 30.0, cpus: Optional[str] = None,
          log: Optional[str] = None) -> Iterator[Redis]:
    """redis-server on a unix socket in a temporary directory (``--port 0``: no TCP; no RDB, no
    AOF) until the block ends (then stopped by PID and the directory removed)."""
    owner = "redis"
    top = tempfile.mkdtemp(prefix="bench-redis-")
    try:
        os.chmod(top, 0o755)
        try:
            pwd.getpwnam(owner)
        except KeyError:
            owner = pwd.getpwuid(os.geteuid()).pw_name
        _own_dir(top, owner)
        path = os.path.join(top, "redis.sock")
        command = [shutil.which("redis-server") or "redis-server", "--port", "0",
                   "--unixsocket", path, "--unixsocketperm", "777", "--save", "",
                   "--appendonly", "no", "--dir", top, "--daemonize", "no",
                   "--maxclients", "10000"]
        if cpus:
            command = ["taskset", "-c", cpus] + command
        process = Process(command, name="redis-server", cwd=top, stop_timeout=10,
                          log=log or os.path.join(top, "redis.log"), **_as_user(owner))
        with process.start():
            process.wait_ready(lambda: _redis_ping(path), timeout)
            yield Redis(path, process)
    finally:
        shutil.rmtree(top, ignore_errors=True)


@contextlib.contextmanager
def databases(max_connections: int = 200, cpus: Optional[str] = None,
              logs: Optional[str] = None) -> Iterator[Dict[str, str]]:
    """PostgreSQL and Redis, both running until the block ends; yields the app's environment:
    {"DATABASE_URL": libpq conninfo, "REDIS_URL": redis-py URL}. ``logs``: a directory for
    postgres.log and redis.log (default: their temporary directories)."""
    paths: List[Optional[str]] = [None, None]
    if logs:
        paths = [os.path.join(logs, "postgres.log"), os.path.join(logs, "redis.log")]
    with postgresql(max_connections, cpus=cpus, log=paths[0]) as pg, \
            redis(cpus=cpus, log=paths[1]) as rd:
        yield {"DATABASE_URL": pg.conninfo, "REDIS_URL": rd.url}
