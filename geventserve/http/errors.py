"""The errors of the data path: what the server refuses (each carries the status to answer
with) and a client that is gone."""

from __future__ import annotations


class Interrupted(BaseException):
    """Raised into a request's code by the worker's watchdog when it has held the event loop
    for --timeout; a BaseException, so that the application's ``except Exception`` lets it
    through to the server, which answers 500."""


class HTTPError(Exception):
    """A request the server refuses; ``detail`` says why in one line, for the client and log.

    A subclass names its status once, in its class line: ``class Gone(HTTPError, status=410,
    reason="Gone")``.
    """

    status = 400
    reason = "Bad Request"

    def __init_subclass__(cls, status: int = 0, reason: str = "", **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if status:
            cls.status, cls.reason = status, reason

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class BadRequest(HTTPError, status=400, reason="Bad Request"):
    """Malformed or ambiguous input (RFC 9110 15.5.1)."""


class RequestTimeout(HTTPError, status=408, reason="Request Timeout"):
    """The head did not arrive within --header-timeout."""


class URITooLong(HTTPError, status=414, reason="URI Too Long"):
    """The request-target passes --limit-request-line."""


class ExpectationFailed(HTTPError, status=417, reason="Expectation Failed"):
    """An Expect other than 100-continue (RFC 9110 10.1.1)."""


class HeaderFieldsTooLarge(HTTPError, status=431, reason="Request Header Fields Too Large"):
    """Too many fields, a field too long, or a head (or trailer section, or run of chunk
    headers) larger than the limits allow in all."""


class MethodNotImplemented(HTTPError, status=501, reason="Not Implemented"):
    """A method this server does not implement, CONNECT included (RFC 9110 9.1)."""


class VersionNotSupported(HTTPError, status=505, reason="HTTP Version Not Supported"):
    """Not HTTP/1.1 or HTTP/1.0: another version, HTTP/0.9, the HTTP/2 preface, RTSP, ICE."""


class BodyError(HTTPError, OSError):
    """Reading the request body failed (truncated, malformed or stalled).

    Raised from ``wsgi.input`` to the application; an OSError so that code which handles I/O
    errors handles it, an HTTPError so that the server answers with the right status if the
    application lets it through.
    """


class TruncatedBody(BodyError, status=400, reason="Bad Request"):
    """The client closed the connection (or it failed) before the whole body came."""


class MalformedBody(BodyError, status=400, reason="Bad Request"):
    """The parser found a fault in the body's framing: its status is the fault's."""

    @classmethod
    def from_fault(cls, fault: HTTPError) -> MalformedBody:
        """The body error for a fault the parser found, with its status (431 for a trailer
        section over the limits, for one)."""
        error = cls(fault.detail)
        error.status, error.reason = fault.status, fault.reason
        return error


class BodyTimeout(BodyError, status=408, reason="Request Timeout"):
    """No byte of the body came for --body-timeout seconds."""


class ClientGone(Exception):
    """Sending to the client failed: it closed the connection or stopped reading."""
