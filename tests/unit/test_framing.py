"""The response framing function and the statuses without content, table-driven."""

import pytest

from geventserve.http.framing import CHUNKED, LENGTH, NO_BODY, UNTIL_CLOSE, response_framing
from geventserve.http.rules import status_has_no_content

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


@pytest.mark.parametrize("status, no_content", [
    (100, True), (103, True), (199, True), (200, False), (201, False), (204, True),
    (206, False), (301, False), (304, True), (400, False), (500, False)])
def test_statuses_without_content(status, no_content):
    assert status_has_no_content(status) is no_content
