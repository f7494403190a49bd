"""Which connection gives up its place when a worker's pool is full and a client waits.

A full pool (--worker-connections) leaves new clients in the kernel's backlog until a place
frees; slow clients that hold their places until --header-timeout would starve them. So a
worker that is full while a client waits closes one connection that can spare its place: an
idle keep-alive one, or one still sending its request head, the one that has sent the least of
it first, the oldest first among equals (an idle connection, or a silent new one, has sent
nothing). A connection whose request is being served is never chosen, nor one the application
has taken over (a WebSocket: its request is being served for as long as it is open): only
connections that wait for a head, or for their TLS handshake, are.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, Optional

if TYPE_CHECKING:
    from .connection import Connection


def choose(connections: Iterable[Connection]) -> Optional[Connection]:
    """The connection to close to make room for a new one, or None if none may be."""
    chosen = None
    chosen_key = (0, 0.0)
    for conn in connections:
        if conn.evictable and conn.request is None:
            key = (conn.head_received, conn.waiting_since)
            if chosen is None or key < chosen_key:
                chosen, chosen_key = conn, key
    return chosen
