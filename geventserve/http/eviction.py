"""Which connection gives up its place when a worker's pool is full and a client waits.

A full pool (--worker-connections) leaves new clients in the kernel's backlog until a place
frees; slow clients that hold their places until --header-timeout would starve them. So a
worker that is full while a client waits closes one connection that can spare its place: an
idle keep-alive one (the oldest idle first), else one still sending its request head, the one
that has sent the least of it first, the oldest first among equals. A connection accepted less
than GRACE seconds ago is left alone (its head is likely on its way: it may be the very client
room is made for), and so is one whose request is being served, or one the application has
taken over (a WebSocket: its request is being served for as long as it is open): only
connections that wait for a head, or for their TLS handshake, are chosen.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, Optional

if TYPE_CHECKING:
    from .connection import Connection


GRACE = 1.0


def choose(connections: Iterable[Connection], now: float) -> Optional[Connection]:
    """The connection to close to make room for a new one, or None if none may be."""
    chosen = None
    chosen_key = (0, 0, 0.0)
    for conn in connections:
        if not conn.evictable or conn.request is not None:
            continue
        if conn.idle:
            key = (0, 0, conn.waiting_since)
        elif now - conn.waiting_since >= GRACE:
            key = (1, conn.head_received, conn.waiting_since)
        else:
            continue
        if chosen is None or key < chosen_key:
            chosen, chosen_key = conn, key
    return chosen
