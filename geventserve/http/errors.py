"""HTTP errors the server answers by itself; each carries the status to send back."""

from __future__ import annotations


class HTTPError(Exception):
    """A request the server refuses; ``detail`` says why in one line, for the client and log."""

    status = 400
    reason = "Bad Request"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class BadRequest(HTTPError):
    status, reason = 400, "Bad Request"


class RequestTimeout(HTTPError):
    status, reason = 408, "Request Timeout"


class ExpectationFailed(HTTPError):
    status, reason = 417, "Expectation Failed"


class URITooLong(HTTPError):
    status, reason = 414, "URI Too Long"


class HeaderFieldsTooLarge(HTTPError):
    status, reason = 431, "Request Header Fields Too Large"


class MethodNotImplemented(HTTPError):
    status, reason = 501, "Not Implemented"


class VersionNotSupported(HTTPError):
    status, reason = 505, "HTTP Version Not Supported"


class BodyError(HTTPError, OSError):
    """Reading the request body failed (truncated, malformed or stalled).

    Raised from ``wsgi.input`` to the application; an OSError so that code which handles I/O
    errors handles it, an HTTPError so that the server answers with the right status if the
    application lets it through.
    """


class TruncatedBody(BodyError):
    status, reason = 400, "Bad Request"


class MalformedBody(BodyError):
    status, reason = 400, "Bad Request"

    @classmethod
    def from_fault(cls, fault: HTTPError) -> MalformedBody:
        """The body error for a fault the parser found, with its status (431 for a trailer
        section over the limits, for one)."""
        error = cls(fault.detail)
        error.status, error.reason = fault.status, fault.reason
        return error


class BodyTimeout(BodyError):
    status, reason = 408, "Request Timeout"
