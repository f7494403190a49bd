"""Listening sockets: parse bind addresses, bind TCP v4/v6 and unix sockets, adopt inherited fds,
and the supervisor's set of listeners across reloads."""

from __future__ import annotations

import errno
import os
import socket
import stat
from dataclasses import dataclass
from typing import Dict, List, MutableMapping, Optional, Tuple

Binds = Tuple[List[str], int, bool]  # --bind, --backlog, --reuse-port

DEFAULT_PORT = 8000


class BindError(Exception):
    """A listener could not be created; the message is one line meant for the operator."""


@dataclass(frozen=True)
class Address:
    """A parsed bind address: ``kind`` is ``tcp``, ``unix`` or ``fd``."""

    kind: str
    host: str = ""
    port: int = 0
    path: str = ""
    fd: int = -1

    def __str__(self) -> str:
        if self.kind == "unix":
            return f"unix:{self.path}"
        if self.kind == "fd":
            return f"fd://{self.fd}"
        if ":" in self.host:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"


def parse_address(text: str) -> Address:
    """Parse ``HOST:PORT``, ``[V6]:PORT``, ``HOST``, ``:PORT``, ``unix:/path`` or ``fd://N``.

    Raises ValueError with a message that says which forms are accepted.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError("expected an address such as 127.0.0.1:8000, [::1]:8000, unix:/path or fd://3")
    text = text.strip()
    if text.startswith("unix:"):
        path = text[5:]
        if path.startswith("//"):
            path = path[2:]
        if not path:
            raise ValueError(f"{text!r}: a unix socket address needs a path, as in "
                             "unix:/run/app.sock")
        return Address("unix", path=path)
    if text.startswith("fd://"):
        num = text[5:]
        if not num.isdigit():
            raise ValueError(f"{text!r}: expected fd://N with N a file descriptor number")
        return Address("fd", fd=int(num))
    if text.startswith("tcp://"):
        text = text[6:]
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError(f"{text!r}: an IPv6 address needs a closing bracket, as in [::1]:8000")
        host, rest = text[1:end], text[end + 1:]
        if rest and not rest.startswith(":"):
            raise ValueError(f"{text!r}: expected [V6ADDR]:PORT")
        port_text = rest[1:] if rest else ""
        try:
            socket.inet_pton(socket.AF_INET6, host)
        except OSError:
            raise ValueError(f"{text!r}: {host!r} is not an IPv6 address") from None
    elif text.count(":") > 1:
        raise ValueError(f"{text!r}: write IPv6 addresses in brackets, as in [::1]:8000")
    else:
        host, _, port_text = text.partition(":")
        host = host or "0.0.0.0"
        if any(c.isspace() or c in "/@?#" for c in host):
            raise ValueError(f"{text!r}: {host!r} is not a host name or address")
    if not port_text:
        port = DEFAULT_PORT
    elif port_text.isdigit() and int(port_text) <= 65535:
        port = int(port_text)
    else:
        raise ValueError(f"{text!r}: the port must be a number from 0 to 65535")
    return Address("tcp", host=host, port=port)


def _unlink_stale_unix_socket(path: str) -> None:
    """Remove a unix socket file left by a dead server; refuse if a server still answers on it."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise BindError(f"cannot listen on unix:{path}: the path exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(path)
    except OSError:
        os.unlink(path)
        return
    finally:
        probe.close()
    raise BindError(f"cannot listen on unix:{path}: another server is accepting connections on it")


def _describe_bind_error(address: Address, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        hint = "address already in use (is another server running on it?)"
    elif exc.errno == errno.EACCES:
        hint = "permission denied (ports below 1024 need privileges)"
    elif exc.errno == errno.EADDRNOTAVAIL:
        hint = "this machine has no such address"
    else:
        hint = exc.strerror or str(exc)
    return f"cannot listen on {address}: {hint}"


def bind(address: Address, backlog: int = 2048, reuse_port: bool = False) -> socket.socket:
    """Create a listening socket for ``address``; raise BindError with a one-line reason."""
    if address.kind == "fd":
        return adopt_fd(address.fd)
    if address.kind == "unix":
        _unlink_stale_unix_socket(address.path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(address.path)
            sock.listen(backlog)
        except OSError as exc:
            sock.close()
            raise BindError(_describe_bind_error(address, exc)) from None
        return sock
    try:
        infos = socket.getaddrinfo(address.host, address.port, socket.AF_UNSPEC,
                                   socket.SOCK_STREAM, 0, socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise BindError(f"cannot listen on {address}: cannot resolve {address.host!r} "
                        f"({exc.strerror})") from None
    # IPv4 first: "localhost" then means 127.0.0.1, as for other servers.
    infos.sort(key=lambda info: info[0] != socket.AF_INET)
    family, socktype, proto, _, sockaddr = infos[0]
    sock = socket.socket(family, socktype, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(sockaddr)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise BindError(_describe_bind_error(address, exc)) from None
    return sock


def adopt_fd(fd: int) -> socket.socket:
    """Wrap an inherited file descriptor that must be a listening stream socket."""
    try:
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        raise BindError(f"cannot use fd://{fd}: {exc.strerror or exc}") from None
    try:
        if sock.type != socket.SOCK_STREAM:
            raise BindError(f"cannot use fd://{fd}: it is not a stream socket")
        if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
            raise BindError(f"cannot use fd://{fd}: the socket is not listening")
    except BindError:
        sock.detach()
        raise
    return sock


def describe(sock: socket.socket) -> str:
    """A URL-like name for a listener, for the log: http://127.0.0.1:8000 or unix:/path."""
    name = sock.getsockname()
    if sock.family == socket.AF_UNIX:
        return f"unix:{name if isinstance(name, str) else name.decode()}"
    host, port = name[0], name[1]
    if sock.family == socket.AF_INET6:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def close_listener(sock: socket.socket, unlink: bool = True) -> None:
    """Close a listener; remove its unix socket file when this process created it."""
    path: Optional[str] = None
    if unlink and sock.family == socket.AF_UNIX:
        try:
            path = sock.getsockname()
        except OSError:
            path = None
    sock.close()
    if path:
        try:
            os.unlink(path)
        except OSError:
            pass


SD_LISTEN_FDS_START = 3


def take_inherited(environ: MutableMapping[str, str]) -> Tuple[str, List[int]]:
    """Listening fds handed down by systemd (LISTEN_FDS) or by a re-exec (GEVENTSERVE_FDS).

    Returns ("systemd" | "reexec" | "", fds) and removes the variables, so that workers and
    anything the app starts do not see them.
    """
    from .reexec import INHERITED_FDS, INHERITED_FDS_KIND

    listen_fds = environ.pop("LISTEN_FDS", None)
    listen_pid = environ.pop("LISTEN_PID", None)
    environ.pop("LISTEN_FDNAMES", None)
    if listen_fds and listen_pid == str(os.getpid()) and listen_fds.isdigit():
        return "systemd", list(range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + int(listen_fds)))
    passed = environ.pop(INHERITED_FDS, "")
    kind = environ.pop(INHERITED_FDS_KIND, "reexec")  # systemd's, passed on across a re-exec
    fds = [int(fd) for fd in passed.split(",") if fd.strip().isdigit()]
    return (kind if kind == "systemd" else "reexec", fds) if fds else ("", [])


def _same_address(sock: socket.socket, address: Address) -> bool:
    if address.kind == "fd":  # wrapping it again would give it two owners, each closing it
        return sock.fileno() == address.fd
    try:
        name = sock.getsockname()
    except OSError:
        return False
    if address.kind == "unix":
        return sock.family == socket.AF_UNIX and name == address.path
    if address.kind != "tcp" or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return False
    if address.port and name[1] != address.port:
        return False
    try:
        wanted = {info[4][0] for info in socket.getaddrinfo(address.host, None, sock.family,
                                                            socket.SOCK_STREAM)}
    except OSError:
        return False
    return name[0] in wanted


def open_listeners(binds: List[str], backlog: int, reuse_port: bool,
                   candidates: List[socket.socket], close_unused: bool = True,
                   in_order: bool = False) -> Tuple[List[socket.socket], Dict[int, bool]]:
    """Listeners for the bind addresses, reusing candidate sockets where they match.

    Candidates (inherited across a re-exec, or the current listeners on a reload) are matched
    by address; with ``in_order`` (a re-exec, which passes them in the order of --bind, port 0
    included) they are taken in order when there are as many as addresses. Returns the
    listeners and, per fd, whether this call created it (and so whether its unix socket file
    is removed on exit).
    """
    addresses = [parse_address(text) for text in binds]
    unused: List[Optional[socket.socket]] = list(candidates)
    positional = in_order and len(unused) == len(addresses)
    listeners: List[socket.socket] = []
    created: Dict[int, bool] = {}
    try:
        for i, address in enumerate(addresses):
            if positional and unused[i] is not None:
                match = unused[i]
            else:
                match = next((s for s in unused if s is not None and _same_address(s, address)),
                             None)
            if match is not None:
                unused[unused.index(match)] = None
                listeners.append(match)
            else:
                sock = bind(address, backlog, reuse_port)
                listeners.append(sock)
                created[sock.fileno()] = address.kind == "unix"
    except BindError:
        for sock in listeners:
            if sock.fileno() in created:
                close_listener(sock, unlink=created[sock.fileno()])
        raise
    if close_unused:
        for sock in unused:
            if sock is not None:
                sock.close()
    return listeners, created


class ListenerSet:
    """The supervisor's listeners. ``current`` are the current generation's. A reload that
    changes --bind makes those it drops ``retiring``: the old workers still serve them, and
    they come back if the reload fails. Once the reload holds (or a later one takes over) they
    are ``retired``, closed as soon as no old worker is left. The set knows which sockets it
    created (their unix socket files are removed on close) and where they came from: "bind",
    "systemd" (kept whatever --bind says) or "reexec" (passed on by the supervisor before).
    """

    def __init__(self) -> None:
        self.current: List[socket.socket] = []
        self.retiring: List[socket.socket] = []
        self.retired: List[socket.socket] = []
        self.origin = "bind"
        self._created: Dict[int, bool] = {}  # fd -> created here (remove its unix socket file)
        self._binds: Binds = ([], 0, False)
        self._before_reload: Optional[Tuple[List[socket.socket], Binds]] = None

    def open(self, binds: Binds, environ: MutableMapping[str, str]) -> None:
        """At start: the sockets systemd or a re-exec passed on, else new ones for --bind;
        BindError with one line."""
        kind, fds = take_inherited(environ)
        self.origin = kind or "bind"
        self._binds = binds
        if kind == "systemd":
            self.current = [adopt_fd(fd) for fd in fds]
            return
        candidates = [adopt_fd(fd) for fd in fds]
        try:
            self.current, created = open_listeners(*binds, candidates, in_order=kind == "reexec")
        except ValueError as exc:
            raise BindError(f"invalid --bind: {exc}") from None
        self._created.update(created)

    def rebind(self, binds: Binds) -> List[socket.socket]:
        """For a reload: the listeners of ``binds``, keeping the current ones that match;
        returns those opened now. BindError or ValueError leave the set as it was."""
        listeners = self.current
        if self.origin != "systemd" and binds != self._binds:
            listeners, created = open_listeners(*binds, list(self.current), close_unused=False)
            self._created.update(created)
        self.retired += self.retiring  # a reload still pending is superseded: none come back
        self.retiring = [s for s in self.current if s not in listeners]
        self._before_reload = (self.current, self._binds)
        opened = [s for s in listeners if s not in self.current]
        self.current, self._binds = listeners, binds
        return opened

    def roll_back(self) -> None:
        """The reload failed: its listeners are closed, the previous ones current again."""
        if self._before_reload is None:
            return
        listeners, self._binds = self._before_reload
        for sock in self.current:
            if sock not in listeners:
                self.close(sock)
        self.current, self.retiring, self._before_reload = listeners, [], None

    def settle(self) -> None:
        """The reload holds: what it dropped is closed once the old workers are gone."""
        self.retired += self.retiring
        self.retiring, self._before_reload = [], None

    def unix_files(self) -> List[str]:
        """The paths of the current unix sockets that this set created (not systemd's)."""
        return [sock.getsockname() for sock in self.current
                if sock.family == socket.AF_UNIX and self._created.get(sock.fileno())]

    def not_current(self) -> List[socket.socket]:
        return self.retiring + self.retired

    def close_retired(self, unlink: bool = True) -> None:
        for sock in self.retired:
            self.close(sock, unlink)
        self.retired = []

    def close_all(self, unlink: bool = True) -> None:
        """Close every listener; ``unlink`` False leaves the unix socket files (a new
        supervisor, started by USR2, serves them)."""
        for sock in self.current + self.retiring + self.retired:
            self.close(sock, unlink)
        self.current, self.retiring, self.retired = [], [], []

    def close(self, sock: socket.socket, unlink: bool = True) -> None:
        created = self._created.pop(sock.fileno(), False)
        try:
            close_listener(sock, unlink=created and unlink)
        except OSError as exc:
            if exc.errno != errno.EBADF:
                raise
