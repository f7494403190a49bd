"""The settings the data path reads: fixed when a worker starts, shared by its connections."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class HTTPSettings:
    """What every connection of a worker reads and none changes."""

    #: seconds an idle connection waits for its next request; 0: one request per connection
    keepalive: float
    #: seconds a request head may take, from its first byte (the first one, from the accept)
    header_timeout: float
    #: seconds a body, the request's or the response's, may stall
    body_timeout: float
    #: --limit-request-line, --limit-request-fields, --limit-request-field-size
    line_limit: int
    fields_limit: int
    field_size_limit: int
    #: files go out with sendfile(2) (which cannot encrypt: not over TLS)
    sendfile: bool
    #: deadlines are kept by a periodic sweep (the gevent worker's), not by socket timeouts
    sweeps_deadlines: bool

    @classmethod
    def from_config(cls, config: Any, *, keepalive: bool = True, sendfile: bool = True,
                    sweeps_deadlines: bool = False) -> HTTPSettings:
        """From the effective settings (``settings.Config``); ``keepalive``: whether the worker
        class keeps connections open between requests at all (the sync worker does not)."""
        return cls(keepalive=config.keepalive if keepalive else 0.0,
                   header_timeout=config.header_timeout, body_timeout=config.body_timeout,
                   line_limit=config.request_line_limit,
                   fields_limit=config.request_fields_limit,
                   field_size_limit=config.request_field_size_limit,
                   sendfile=sendfile, sweeps_deadlines=sweeps_deadlines)
