"""Free TCP ports on the loopback interface."""

from __future__ import annotations

import socket
from typing import List


def free_ports(count: int, host: str = "127.0.0.1") -> List[int]:
    """``count`` different ports free right now (bound to port 0 together, then closed); another
    process may take one before it is used, so a start that finds its port taken tries again."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind((host, 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def free_port(host: str = "127.0.0.1") -> int:
    """One port free right now (see free_ports)."""
    return free_ports(1, host)[0]
