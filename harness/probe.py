"""One HTTP GET, never through a proxy of the caller's shell: does a server answer, and what."""

from __future__ import annotations

import http.client
from typing import Tuple
from urllib.parse import urlsplit


def http_get(url: str, timeout: float = 5.0) -> Tuple[int, bytes]:
    """GET ``url`` (http://host:port/path?query) on a new connection: (status, body), whatever
    the status. OSError (refused, reset, timed out) or http.client.HTTPException if no answer."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80,
                                      timeout=timeout)
    try:
        conn.request("GET", (parts.path or "/") + (f"?{parts.query}" if parts.query else ""))
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()
