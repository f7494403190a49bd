"""A chunked request body walked line by line (RFC 9112 7.1), ahead of llhttp.

The walk knows where each chunk line is, and so where the body ends: its chunk data is
passed over by size, and the trailer section ends at the first empty line. Each chunk line
is checked whole, against the grammar and against --limit-request-field-size (llhttp bounds
neither an extension's length nor, once the head is parsed, anything but the chunk size), and
given to llhttp without its extensions: RFC 9112 7.1.1 allows whitespace around ";" and "=",
which llhttp refuses, and extensions mean nothing to this server (a recipient must ignore
the ones it does not understand). A line that spans reads is held until it is whole, so that
the answer does not depend on how the bytes came.
"""

from __future__ import annotations

import re
from typing import Any, Optional, Tuple

from .errors import BadRequest, HeaderFieldsTooLarge, HTTPError

_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_QUOTED = rb'"(?:[\t !#-\[\]-~\x80-\xff]|\\[\t -~\x80-\xff])*"'
_BWS = rb"[ \t]*"
#: chunk-size [ chunk-ext ] CRLF, with
#: chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
CHUNK_LINE = re.compile(rb"([0-9A-Fa-f]+)(?:%s;%s%s(?:%s=%s(?:%s|%s))?)*\r\n" % (
    _BWS, _BWS, _TOKEN, _BWS, _BWS, _TOKEN, _QUOTED))
_HEAD_END = b"\r\n\r\n"
_CRLF = b"\r\n"


class ChunkLineError(Exception):
    """What the body may not have: a chunk line malformed or longer than its limit (400), or a
    trailer section larger than its own (431). ``error`` is the answer, ``at`` where in the
    read the fault lies when it is not where the step began (-1)."""

    def __init__(self, error: HTTPError, at: int = -1) -> None:
        super().__init__(error.detail)
        self.error, self.at = error, at


class ChunkedWalk:
    """Where a chunked body stands, read after read: ``advance`` says how far the next step
    goes, and what llhttp is to be fed for it."""

    __slots__ = ("limit", "trailer_limit", "_skip", "_held", "_tail", "_in_trailer",
                 "_trailer_bytes", "ended")

    def __init__(self, limit: int, trailer_limit: int) -> None:
        #: the longest chunk line, CRLF included (--limit-request-field-size)
        self.limit = limit
        #: the largest trailer section, its last CRLF included (what a head may take)
        self.trailer_limit = trailer_limit
        self._trailer_bytes = 0  # of the trailer section, in earlier reads
        self._skip = 0  # bytes of chunk data, and the CRLF after it, still to pass over
        self._held = b""  # a chunk line begun in an earlier read
        self._tail = b""  # in the trailer section: its last bytes so far (3 at most)
        self._in_trailer = False
        #: the body has ended (at the position the last ``advance`` returned)
        self.ended = False

    def advance(self, data: Any, pos: int, size: int) -> Tuple[int, Optional[bytes]]:
        """One step from ``pos`` in the read (``data[:size]``): (where it ends, what llhttp is
        fed in place of the bytes from ``pos`` to there: None for those bytes as they are, or
        a chunk line, b"" for a line still to be completed by the next read).
        ChunkLineError for a line the body may not have."""
        if self._skip:
            step = min(self._skip, size - pos)
            self._skip -= step
            return pos + step, None
        if self._in_trailer:
            return self._trailer(data, pos, size), None
        held = self._held
        room = self.limit - len(held)  # what the line may still take, CRLF included
        lf = data.find(b"\n", pos, min(size, pos + room))
        if lf < 0:
            if size - pos >= room:
                raise ChunkLineError(BadRequest(
                    f"malformed request body: a chunk line longer than {self.limit} bytes "
                    "(--limit-request-field-size)"))
            self._held = held + bytes(data[pos:size])
            return size, b""
        line = held + bytes(data[pos:lf + 1])
        match = CHUNK_LINE.fullmatch(line)
        if match is None:
            raise ChunkLineError(BadRequest(f"malformed request body: invalid chunk line "
                                            f"{line[:40]!r}"))
        self._held = b""
        digits = match.group(1)
        chunk_size = int(digits, 16)
        if chunk_size:
            self._skip = chunk_size + 2
        else:
            self._in_trailer = True
            self._tail = _CRLF
        if held or len(line) != len(digits) + 2:
            return lf + 1, digits + _CRLF
        return lf + 1, None

    def _trailer(self, data: Any, pos: int, size: int) -> int:
        """In the trailer section (after the last chunk's line): it ends at the first empty
        line, that is the first CRLFCRLF from the last chunk line's CRLF on, and may take
        trailer_limit bytes (431 at the byte past them, however the bytes came)."""
        tail = self._tail
        found = (tail + bytes(data[pos:min(size, pos + 3)])).find(_HEAD_END)
        if found >= 0:
            end = pos + found + 4 - len(tail)
        else:
            found = data.find(_HEAD_END, pos, size)
            end = found + 4 if found >= 0 else -1
        room = self.trailer_limit - self._trailer_bytes
        if (end if end >= 0 else size) - pos > room:
            raise ChunkLineError(HeaderFieldsTooLarge(
                "the trailer section is larger than the limits allow (--limit-request-fields "
                "and --limit-request-field-size)"), pos + room)
        if end >= 0:
            self.ended = True
            return end
        self._trailer_bytes += size - pos
        self._tail = (tail + bytes(data[max(pos, size - 3):size]))[-3:]
        return size
