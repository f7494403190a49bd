"""The objects gunicorn-style pre_request / post_request hooks receive, with gunicorn's names."""

from __future__ import annotations

from typing import Any, Dict, List, Tuple

from .parser import Request


class HookRequest:
    """``req``: method, uri, path, query, version (a tuple), headers ((NAME, value) pairs,
    names upper-cased as gunicorn gives them), scheme, remote_addr."""

    def __init__(self, request: Request, environ: Dict[str, Any]) -> None:
        self.method = request.method
        self.uri = environ.get("RAW_URI", "")
        self.path = environ.get("PATH_INFO", "")
        self.query = environ.get("QUERY_STRING", "")
        self.version = tuple(int(part) for part in request.version.split("."))
        self.headers: List[Tuple[str, str]] = [
            (name.decode("latin-1").upper(), value.decode("latin-1"))
            for name, value in request.headers]
        self.scheme = environ.get("wsgi.url_scheme", "http")
        self.remote_addr = environ.get("REMOTE_ADDR", "")


class HookResponse:
    """``resp``: status ('200 OK'), status_code, headers (as given to start_response), sent
    (body bytes sent)."""

    def __init__(self, status: str, headers: List[Tuple[str, str]], sent: int) -> None:
        self.status = status or ""
        self.status_code = int(status[:3]) if status else 0
        self.headers = headers
        self.sent = sent
