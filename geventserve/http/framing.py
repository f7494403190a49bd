"""How a response's body is delimited (RFC 9112 6.3), decided once per response.

``response_framing`` is a pure function of the response's status, the request's method and
version, the application's Content-Length and, when the application gave its whole body at
once, that body's length. The answer is a kind and the Content-Length to write (or None):

- NO_BODY: the head is the whole response (HEAD, 1xx, 204, 304); a Content-Length may still
  be written, saying what a GET would have carried (RFC 9110 8.6);
- LENGTH: Content-Length bytes follow;
- CHUNKED: Transfer-Encoding: chunked (HTTP/1.1 only);
- UNTIL_CLOSE: the body ends with the connection (HTTP/1.0 with no known length).
"""

from __future__ import annotations

from typing import Optional, Tuple

from .rules import NO_CONTENT_STATUSES, NO_LENGTH_STATUSES

NO_BODY, LENGTH, CHUNKED, UNTIL_CLOSE = range(4)

Framing = Tuple[int, Optional[int]]
_NO_BODY: Framing = (NO_BODY, None)
_CHUNKED: Framing = (CHUNKED, None)
_UNTIL_CLOSE: Framing = (UNTIL_CLOSE, None)


def response_framing(status: int, method: str, version: str, app_length: Optional[int],
                     whole_length: Optional[int]) -> Framing:
    """(kind, Content-Length to write or None); see the module docstring.

    ``app_length``: the Content-Length the application gave, if any; ``whole_length``: the
    length of the whole body when the application gave all of it at once, else None.
    """
    if status in NO_CONTENT_STATUSES or method == "HEAD":
        if status in NO_LENGTH_STATUSES:
            return _NO_BODY
        if app_length is not None:
            return (NO_BODY, app_length)
        # The whole body given to HEAD says what GET sends; not an empty one, which may be an
        # application that sends none to HEAD (Flask does so): GET would send a body.
        if whole_length and status not in NO_CONTENT_STATUSES:
            return (NO_BODY, whole_length)
        return _NO_BODY
    if app_length is not None:
        return (LENGTH, app_length)
    if whole_length is not None:
        return (LENGTH, whole_length)
    return _CHUNKED if version == "1.1" else _UNTIL_CLOSE
