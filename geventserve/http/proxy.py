"""Behind a proxy: X-Forwarded-For / -Proto / -Ssl, believed only from trusted peers."""

from __future__ import annotations

import ipaddress
from typing import Any, Dict, List


class TrustedProxies:
    """The peers allowed to speak for the client (--forwarded-allow-ips)."""

    def __init__(self, allowed: List[str]) -> None:
        self.everyone = "*" in allowed
        self.networks = [ipaddress.ip_network(entry, strict=False)
                         for entry in allowed if entry != "*"]
        self._cache: Dict[str, bool] = {}

    def trusts(self, address: str) -> bool:
        """Whether ``address`` (an IP, or "" for a unix socket peer) is a trusted proxy."""
        if self.everyone or not address:
            return True  # a unix socket peer is a local process allowed onto the socket
        known = self._cache.get(address)
        if known is None:
            try:
                ip = ipaddress.ip_address(address.split("%", 1)[0])
            except ValueError:
                return False
            if getattr(ip, "ipv4_mapped", None) is not None:
                ip = ip.ipv4_mapped  # ::ffff:10.0.0.1 is 10.0.0.1
            known = any(ip in network for network in self.networks)
            if len(self._cache) < 4096:
                self._cache[address] = known
        return known

    def apply(self, environ: Dict[str, Any]) -> None:
        """Rewrite REMOTE_ADDR and wsgi.url_scheme from the forwarding headers of a trusted peer.

        The client is the rightmost X-Forwarded-For entry that is not itself a trusted proxy:
        entries a client wrote itself stand left of the ones its proxies appended.
        """
        forwarded_for = environ.get("HTTP_X_FORWARDED_FOR")
        if forwarded_for:
            client = None
            for entry in reversed(forwarded_for.split(",")):
                entry = entry.strip()
                if not _is_ip(entry):
                    break
                client = entry
                if not self.trusts(entry):
                    break
            if client is not None:
                environ["REMOTE_ADDR"] = client
        proto = environ.get("HTTP_X_FORWARDED_PROTO")
        if proto:
            scheme = proto.split(",", 1)[0].strip().lower()
            if scheme in ("http", "https"):
                environ["wsgi.url_scheme"] = scheme
        else:
            ssl, protocol = (environ.get("HTTP_X_FORWARDED_SSL"),
                             environ.get("HTTP_X_FORWARDED_PROTOCOL"))
            if ((ssl and ssl.strip().lower() == "on")
                    or (protocol and protocol.strip().lower() == "ssl")):
                environ["wsgi.url_scheme"] = "https"


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return False
    return True
