"""The response framing function and the statuses without content, table-driven."""

import pytest

from geventserve.http.framing import CHUNKED, LENGTH, NO_BODY, UNTIL_CLOSE, response_framing
from geventserve.http.rules import NO_CONTENT_STATUSES, NO_LENGTH_STATUSES

STREAMED = None  # the application streams: the length of the whole body is not known

# (status, method, version, the app's Content-Length, the whole body's length) -> framing
CASES = [
    # the application says the length: it is used, also where no body follows
    ((200, "GET", "1.1", 5, STREAMED), (LENGTH, 5)),
    ((200, "GET", "1.0", 5, STREAMED), (LENGTH, 5)),
    ((200, "POST", "1.1", 0, 0), (LENGTH, 0)),
    ((200, "HEAD", "1.1", 11, STREAMED), (NO_BODY, 11)),
    ((304, "GET", "1.1", 4, STREAMED), (NO_BODY, 4)),
    ((204, "GET", "1.1", 4, STREAMED), (NO_BODY, None)),  # never in a 204
    ((103, "GET", "1.1", 4, STREAMED), (NO_BODY, None)),  # nor in a 1xx
    # the whole body is known: its length
    ((200, "GET", "1.1", None, 3), (LENGTH, 3)),
    ((200, "GET", "1.1", None, 0), (LENGTH, 0)),
    ((404, "GET", "1.0", None, 9), (LENGTH, 9)),
    ((200, "HEAD", "1.1", None, 5), (NO_BODY, 5)),
    # an empty body to HEAD may be an app that sends none to HEAD (Flask): no length
    ((200, "HEAD", "1.1", None, 0), (NO_BODY, None)),
    ((304, "GET", "1.1", None, 3), (NO_BODY, None)),
    ((204, "GET", "1.1", None, 0), (NO_BODY, None)),
    # streamed without a length: chunked on HTTP/1.1, until the close on HTTP/1.0
    ((200, "GET", "1.1", None, STREAMED), (CHUNKED, None)),
    ((500, "POST", "1.1", None, STREAMED), (CHUNKED, None)),
    ((200, "GET", "1.0", None, STREAMED), (UNTIL_CLOSE, None)),
    ((200, "HEAD", "1.1", None, STREAMED), (NO_BODY, None)),
    ((200, "HEAD", "1.0", None, STREAMED), (NO_BODY, None)),
    ((304, "GET", "1.0", None, STREAMED), (NO_BODY, None)),
    ((204, "GET", "1.1", None, STREAMED), (NO_BODY, None)),
]


@pytest.mark.parametrize("given, framing", CASES, ids=[str(c[0]) for c in CASES])
def test_response_framing(given, framing):
    assert response_framing(*given) == framing


@pytest.mark.parametrize("status, no_content, no_length", [
    (100, True, True), (103, True, True), (199, True, True), (200, False, False),
    (201, False, False), (204, True, True), (206, False, False), (301, False, False),
    (304, True, False), (400, False, False), (500, False, False)])
def test_statuses_without_content(status, no_content, no_length):
    assert (status in NO_CONTENT_STATUSES) is no_content
    assert (status in NO_LENGTH_STATUSES) is no_length
