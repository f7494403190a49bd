"""wsgi.input: the request body, received from the connection only as the application reads it."""

from __future__ import annotations

from typing import Callable, Iterator, List

from .parser import Request


class Input:
    """A PEP 3333 input stream over one request's body; ``b""`` at the end of the body.

    ``fill(request)`` receives more of the body into ``request.body`` or raises a BodyError.
    """

    __slots__ = ("_fill", "_request")

    def __init__(self, fill: Callable[[Request], None], request: Request) -> None:
        self._fill = fill
        self._request = request

    def read(self, size: int = -1) -> bytes:
        request = self._request
        body = request.body
        if size is None or size < 0:
            while not request.complete:
                self._fill(request)
            size = len(body)
        else:
            while len(body) < size and not request.complete:
                self._fill(request)
        return _take(body, size)

    def readline(self, size: int = -1) -> bytes:
        request = self._request
        body = request.body
        start = 0
        while True:
            end = body.find(b"\n", start)
            if end >= 0:
                end += 1
                break
            if (size is not None and 0 <= size <= len(body)) or request.complete:
                end = len(body)
                break
            start = len(body)
            self._fill(request)
        if size is not None and 0 <= size < end:
            end = size
        return _take(body, end)

    def readlines(self, hint: int = -1) -> List[bytes]:
        lines = []
        total = 0
        while True:
            line = self.readline()
            if not line:
                return lines
            lines.append(line)
            total += len(line)
            if hint is not None and 0 < hint <= total:
                return lines

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        line = self.readline()
        if not line:
            raise StopIteration
        return line


def _take(body: bytearray, size: int) -> bytes:
    if size >= len(body):
        data = bytes(body)
        body.clear()
        return data
    with memoryview(body) as view:
        data = bytes(view[:size])  # one copy (body[:size] would make two)
    del body[:size]
    return data


class EmptyInput:
    """wsgi.input for a request without a body (shared: it holds no state)."""

    __slots__ = ()

    def read(self, size: int = -1) -> bytes:
        return b""

    def readline(self, size: int = -1) -> bytes:
        return b""

    def readlines(self, hint: int = -1) -> List[bytes]:
        return []

    def __iter__(self) -> Iterator[bytes]:
        return iter(())


EMPTY_INPUT = EmptyInput()
