"""The PROXY protocol (HAProxy's proxy-protocol.txt, v1 text and v2 binary): the header a load
balancer sends first on each connection to say whose connection it relays.

A small strict parser (``parse``: it is not HTTP) and the reader that takes exactly the header's
bytes off a socket (``read_header``), so that what follows, HTTP or a TLS handshake, is read as
if the header had never been there. Anything that is not a whole, well-formed header is refused
(``ProxyHeaderError``); the connection is then closed.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from typing import Callable, List, Optional, Tuple

from .proxy import TrustedProxies

V1_PREFIX = b"PROXY "
V1_LIMIT = 107  # the longest v1 line, CRLF included
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V2_FIXED = 16  # signature, version and command, family and transport, length
#: the longest v2 address block with its TLVs accepted (HAProxy's own TLVs, SSL details
#: included, take a few hundred bytes; the format allows 64 KiB)
V2_PAYLOAD_LIMIT = 2048
PEEK_SIZE = V2_FIXED + V2_PAYLOAD_LIMIT
# v2: the address families (high nibble) with the size of their address block
_V2_FAMILIES = {0x1: ("IPv4", 12), 0x2: ("IPv6", 36), 0x3: ("unix", 216)}
_V2_STREAM = 0x1
_V1_FAMILIES = {b"TCP4": ipaddress.IPv4Address, b"TCP6": ipaddress.IPv6Address}
VERSIONS = {"v1": (1,), "v2": (2,), "auto": (1, 2)}

Address = Tuple[str, str]  # (address, port) as REMOTE_ADDR and REMOTE_PORT take them


class ProxyHeaderError(Exception):
    """Not a valid PROXY header; the message says why, for the log."""


@dataclass(frozen=True)
class ProxyHeader:
    """What a header says: ``source`` is the client's (address, port), ("", "") for a unix
    socket client, None for a LOCAL or UNKNOWN header (a balancer's own health check), whose
    connection is served with its real peer."""

    version: int
    source: Optional[Address]
    destination: Optional[Address] = None


def parse(data: bytes, versions: Tuple[int, ...] = (1, 2)) -> Optional[Tuple[ProxyHeader, int]]:
    """The header at the start of ``data`` and its length; None when ``data`` is a valid but
    incomplete start of one; ProxyHeaderError otherwise."""
    if not data:
        return None
    if data[:1] == b"P" and 1 in versions:
        return _parse_v1(data)
    if data[:1] == b"\r" and 2 in versions:
        return _parse_v2(data)
    names = " or ".join(f"v{v}" for v in versions)
    raise ProxyHeaderError(f"no PROXY protocol {names} header: the connection starts with "
                           f"{data[:16]!r}")


def _parse_v1(data: bytes) -> Optional[Tuple[ProxyHeader, int]]:
    head = data[:V1_LIMIT]
    if not (head.startswith(V1_PREFIX) or V1_PREFIX.startswith(head)):
        raise ProxyHeaderError(f"no PROXY protocol header: the connection starts with "
                               f"{data[:16]!r}")
    end = head.find(b"\r\n")
    if end < 0:
        if b"\n" in head or b"\r" in head[:-1]:
            raise ProxyHeaderError("malformed PROXY v1 header: a CR or LF inside the line")
        if len(head) >= V1_LIMIT:
            raise ProxyHeaderError(f"PROXY v1 header longer than {V1_LIMIT} bytes")
        return None
    line = head[:end]
    if b"\r" in line or b"\n" in line:
        raise ProxyHeaderError("malformed PROXY v1 header: a CR or LF inside the line")
    fields = line.split(b" ")
    if fields[1:2] == [b"UNKNOWN"]:  # the rest of the line is to be ignored
        return ProxyHeader(1, None), end + 2
    if len(fields) != 6:
        raise ProxyHeaderError(f"malformed PROXY v1 header {line[:80]!r}: expected PROXY "
                               "TCP4|TCP6 SOURCE DESTINATION SPORT DPORT, single spaces")
    _, protocol, source, destination, source_port, destination_port = fields
    family = _V1_FAMILIES.get(protocol)
    if family is None:
        raise ProxyHeaderError(f"PROXY v1 header with an unknown protocol {protocol[:16]!r}")
    return ProxyHeader(1, (_v1_address(family, source), _v1_port(source_port)),
                       (_v1_address(family, destination), _v1_port(destination_port))), end + 2


def _v1_address(family: type, text: bytes) -> str:
    try:
        return str(family(text.decode("ascii")))
    except (ValueError, UnicodeDecodeError):
        kind = "TCP4" if family is ipaddress.IPv4Address else "TCP6"
        raise ProxyHeaderError(f"PROXY v1 header: {text[:48]!r} is not an address of its "
                               f"family {kind}") from None


def _v1_port(text: bytes) -> str:
    if (not text.isdigit() or len(text) > 5 or (text[:1] == b"0" and text != b"0")
            or int(text) > 65535):
        raise ProxyHeaderError(f"PROXY v1 header: {text[:16]!r} is not a port (0 to 65535)")
    return text.decode("ascii")


def _parse_v2(data: bytes) -> Optional[Tuple[ProxyHeader, int]]:
    if len(data) < V2_FIXED:
        if not V2_SIGNATURE.startswith(data[:12]):
            raise ProxyHeaderError(f"no PROXY protocol header: the connection starts with "
                                   f"{data[:16]!r}")
        return None
    if data[:12] != V2_SIGNATURE:
        raise ProxyHeaderError(f"no PROXY protocol header: the connection starts with "
                               f"{data[:16]!r}")
    version, command = data[12] >> 4, data[12] & 0xF
    family, transport = data[13] >> 4, data[13] & 0xF
    length = int.from_bytes(data[14:16], "big")
    if version != 2:
        raise ProxyHeaderError(f"PROXY v2 header with version {version}")
    if command > 1:
        raise ProxyHeaderError(f"PROXY v2 header with an unknown command {command}")
    if length > V2_PAYLOAD_LIMIT:
        raise ProxyHeaderError(f"PROXY v2 header of {length} bytes, more than the "
                               f"{V2_PAYLOAD_LIMIT} accepted")
    end = V2_FIXED + length
    if len(data) < end:
        return None
    payload = data[V2_FIXED:end]
    if command == 0 or family == 0:  # LOCAL, or PROXY of an unspecified family
        return ProxyHeader(2, None), end
    if family not in _V2_FAMILIES:
        raise ProxyHeaderError(f"PROXY v2 header with an unknown address family {family}")
    name, size = _V2_FAMILIES[family]
    if transport != _V2_STREAM:
        raise ProxyHeaderError(f"PROXY v2 header for a transport ({transport}) other than a "
                               "stream, on a stream connection")
    if length < size:
        raise ProxyHeaderError(f"PROXY v2 header claims an {name} connection but carries "
                               f"{length} bytes of addresses, not {size}")
    _check_tlvs(payload[size:])
    if name == "unix":
        return ProxyHeader(2, ("", ""), ("", "")), end
    half = (size - 4) // 2
    ip = ipaddress.IPv4Address if name == "IPv4" else ipaddress.IPv6Address
    source = (str(ip(payload[:half])), str(int.from_bytes(payload[2 * half:2 * half + 2], "big")))
    destination = (str(ip(payload[half:2 * half])),
                   str(int.from_bytes(payload[2 * half + 2:size], "big")))
    return ProxyHeader(2, source, destination), end


def _check_tlvs(data: bytes) -> None:
    """The TLVs after the addresses (type, 2-byte length, value) must fill the rest exactly."""
    at = 0
    while at < len(data):
        if at + 3 > len(data) or at + 3 + int.from_bytes(data[at + 1:at + 3], "big") > len(data):
            raise ProxyHeaderError("PROXY v2 header with a truncated TLV after the addresses")
        at += 3 + int.from_bytes(data[at + 1:at + 3], "big")


def read_header(recv: Callable[..., bytes], versions: Tuple[int, ...] = (1, 2)) -> ProxyHeader:
    """Take the header off a socket whose ``recv`` is given, and not one byte more: what
    follows is peeked at, never taken. ProxyHeaderError for a bad or cut-short header;
    socket.timeout (a deadline) and OSError pass through."""
    taken = b""
    while True:
        peeked = recv(PEEK_SIZE - len(taken), socket.MSG_PEEK)
        if not peeked:
            where = "within" if taken else "before"
            raise ProxyHeaderError(f"the peer closed the connection {where} its PROXY header")
        found = parse(taken + peeked, versions)
        if found is None:  # all of it belongs to the header: take it, wait for the rest
            taken += _take(recv, len(peeked))
            continue
        header, length = found
        _take(recv, length - len(taken))
        return header


def _take(recv: Callable[..., bytes], count: int) -> bytes:
    """Receive ``count`` bytes already peeked at (so there, without waiting)."""
    parts: List[bytes] = []
    while count > 0:
        part = recv(count)
        if not part:
            raise ProxyHeaderError("the peer closed the connection within its PROXY header")
        parts.append(part)
        count -= len(part)
    return b"".join(parts)


class ProxyProtocol:
    """--proxy-protocol: which versions are accepted, from which peers (--proxy-allow-from,
    and every unix socket peer), and whose X-Forwarded-* headers are believed once a header
    has named the client (--forwarded-allow-ips)."""

    def __init__(self, mode: str, allow_from: List[str], forwarded: TrustedProxies) -> None:
        self.versions = VERSIONS[mode]
        self.senders = TrustedProxies(allow_from)
        self.forwarded = forwarded

    def expected_from(self, peer: str) -> bool:
        """Whether the peer ``peer`` ("" over a unix socket) must send a header."""
        return self.senders.trusts(peer)
