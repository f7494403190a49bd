"""The PROXY protocol reader, in-process over a real socketpair: every header, good and bad, sent
whole and byte by byte; a good one is taken exactly, leaving the bytes after it unread."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time

import pytest

from geventserve.http.proxy_protocol import (
    V2_SIGNATURE,
    ProxyHeader,
    ProxyHeaderError,
    parse,
    read_header,
)

AFTER = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


def v2(command=1, family=0x11, addresses=b"", tlvs=b"", version=2, length=None):
    payload = addresses + tlvs
    return (V2_SIGNATURE + bytes([version << 4 | command, family])
            + struct.pack("!H", len(payload) if length is None else length) + payload)


def tlv(kind, value):
    return bytes([kind]) + struct.pack("!H", len(value)) + value


IPV4 = socket.inet_pton(socket.AF_INET, "203.0.113.7") + socket.inet_pton(
    socket.AF_INET, "10.0.0.1") + struct.pack("!HH", 51234, 443)
IPV6 = socket.inet_pton(socket.AF_INET6, "2001:db8::7") + socket.inet_pton(
    socket.AF_INET6, "2001:db8::1") + struct.pack("!HH", 40000, 8443)
UNIX = b"/run/client.sock".ljust(108, b"\0") + b"/run/server.sock".ljust(108, b"\0")

GOOD = {
    "v1 TCP4": (b"PROXY TCP4 203.0.113.7 10.0.0.1 51234 443\r\n",
                ProxyHeader(1, ("203.0.113.7", "51234"), ("10.0.0.1", "443"))),
    "v1 TCP6": (b"PROXY TCP6 2001:db8::7 2001:db8::1 40000 8443\r\n",
                ProxyHeader(1, ("2001:db8::7", "40000"), ("2001:db8::1", "8443"))),
    "v1 UNKNOWN (a balancer's health check)": (b"PROXY UNKNOWN\r\n", ProxyHeader(1, None)),
    "v1 UNKNOWN with addresses ignored": (b"PROXY UNKNOWN ff::1 ff::2 1 2\r\n",
                                          ProxyHeader(1, None)),
    "v1 longest line": (b"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
                        b"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n",
                        ProxyHeader(1, ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "65535"),
                                    ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "65535"))),
    "v2 IPv4": (v2(addresses=IPV4),
                ProxyHeader(2, ("203.0.113.7", "51234"), ("10.0.0.1", "443"))),
    "v2 IPv6 with TLVs": (v2(family=0x21, addresses=IPV6,
                             tlvs=tlv(0x01, b"h2") + tlv(0x04, b"") + tlv(0x05, b"id-1")),
                          ProxyHeader(2, ("2001:db8::7", "40000"), ("2001:db8::1", "8443"))),
    "v2 unix": (v2(family=0x31, addresses=UNIX), ProxyHeader(2, ("", ""), ("", ""))),
    "v2 LOCAL (a balancer's health check)": (v2(command=0, family=0), ProxyHeader(2, None)),
    "v2 LOCAL with addresses ignored": (v2(command=0, family=0x11, addresses=IPV4),
                                        ProxyHeader(2, None)),
    "v2 PROXY of an unspecified family": (v2(family=0x00), ProxyHeader(2, None)),
}

BAD = {
    "plain HTTP": (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "no PROXY protocol"),
    "HTTP/2 preface": (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "no PROXY protocol"),
    "TLS ClientHello": (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", "no PROXY protocol"),
    "lower-case v1": (b"proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n", "no PROXY protocol"),
    "v1 without CRLF, too long": (b"PROXY TCP4 " + b"1" * 120, "longer than 107"),
    "v1 bare LF": (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "CR or LF"),
    "v1 double space": (b"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n", "malformed"),
    "v1 missing port": (b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", "malformed"),
    "v1 unknown protocol": (b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n", "unknown protocol"),
    "v1 TCP4 with an IPv6 address": (b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n", "family TCP4"),
    "v1 TCP6 with an IPv4 address": (b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n", "family TCP6"),
    "v1 bad address": (b"PROXY TCP4 1.2.3.400 5.6.7.8 1 2\r\n", "not an address"),
    "v1 port too big": (b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", "not a port"),
    "v1 port with a leading zero": (b"PROXY TCP4 1.2.3.4 5.6.7.8 080 2\r\n", "not a port"),
    "v1 port with a sign": (b"PROXY TCP4 1.2.3.4 5.6.7.8 +80 2\r\n", "not a port"),
    "v2 bad signature": (V2_SIGNATURE[:-1] + b"X\x21\x11\x00\x0c" + IPV4, "no PROXY protocol"),
    "v2 version 1": (v2(version=1, addresses=IPV4), "version 1"),
    "v2 unknown command": (v2(command=2, addresses=IPV4), "unknown command"),
    "v2 oversized": (v2(addresses=IPV4, length=60000), "more than the 2048"),
    "v2 IPv4 claimed, 4 bytes carried": (v2(family=0x11, addresses=IPV4[:4]),
                                         "claims an IPv4 connection"),
    "v2 IPv6 claimed, IPv4 addresses carried": (v2(family=0x21, addresses=IPV4),
                                                "claims an IPv6 connection"),
    "v2 unix claimed, IPv6 addresses carried": (v2(family=0x31, addresses=IPV6),
                                                "claims an unix connection"),
    "v2 datagram transport": (v2(family=0x12, addresses=IPV4), "other than a stream"),
    "v2 unknown family": (v2(family=0x41, addresses=IPV4), "unknown address family"),
    "v2 truncated TLV": (v2(addresses=IPV4, tlvs=tlv(0x05, b"abcdef")[:-2]), "truncated TLV"),
}


@contextlib.contextmanager
def sent(data, byte_by_byte=False):
    """The reading end of a socketpair whose other end sends ``data`` from a thread (whole,
    or one byte each 0.2 ms), then shuts its writing side."""
    reader, sender = socket.socketpair()
    reader.settimeout(5)
    sender.settimeout(5)

    def send():
        try:
            if byte_by_byte:
                for i in range(len(data)):
                    sender.sendall(data[i:i + 1])
                    time.sleep(0.0002)
            else:
                sender.sendall(data)
            sender.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the reader gave up first: what it saw is what is checked

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    try:
        with reader, sender:
            yield reader
    finally:
        thread.join(5)


@pytest.mark.parametrize("byte_by_byte", [False, True], ids=["whole", "byte-by-byte"])
@pytest.mark.parametrize("name", GOOD)
def test_good_header_is_taken_exactly(name, byte_by_byte):
    data, expected = GOOD[name]
    with sent(data + AFTER, byte_by_byte) as reader:
        assert read_header(reader.recv) == expected
        rest = b""
        while chunk := reader.recv(4096):
            rest += chunk
        assert rest == AFTER  # not one byte of what follows was taken


@pytest.mark.parametrize("byte_by_byte", [False, True], ids=["whole", "byte-by-byte"])
@pytest.mark.parametrize("name", BAD)
def test_bad_header_is_refused(name, byte_by_byte):
    data, message = BAD[name]
    with sent(data + AFTER, byte_by_byte) as reader, \
            pytest.raises(ProxyHeaderError, match=message):
        read_header(reader.recv)


@pytest.mark.parametrize("name", [name for name in GOOD if "longest" not in name])
def test_truncated_header_is_refused(name):
    data, _ = GOOD[name]
    for cut in (1, len(data) // 2, len(data) - 1):
        with sent(data[:cut]) as reader, \
                pytest.raises(ProxyHeaderError, match="closed the connection within"):
            read_header(reader.recv)


def test_nothing_sent_is_refused_at_the_close():
    with sent(b"") as reader, pytest.raises(ProxyHeaderError, match="closed the connection before"):
        read_header(reader.recv)


def test_silence_times_out():
    reader, sender = socket.socketpair()
    with reader, sender:
        reader.settimeout(0.2)
        sender.sendall(b"PROXY TCP4 1.2")
        with pytest.raises(socket.timeout):
            read_header(reader.recv)


@pytest.mark.parametrize("versions,name,accepted", [
    ((1,), "v1 TCP4", True), ((1,), "v2 IPv4", False),
    ((2,), "v2 IPv4", True), ((2,), "v1 TCP4", False),
])
def test_a_version_not_accepted_is_refused(versions, name, accepted):
    data, expected = GOOD[name]
    if accepted:
        assert parse(data + AFTER, versions) == (expected, len(data))
    else:
        with pytest.raises(ProxyHeaderError, match="no PROXY protocol"):
            parse(data, versions)


@pytest.mark.parametrize("name", GOOD)
def test_every_prefix_of_a_good_header_asks_for_more(name):
    data, _ = GOOD[name]
    for end in range(len(data)):
        assert parse(data[:end]) is None, data[:end]
