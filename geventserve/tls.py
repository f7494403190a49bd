"""TLS: the server context from the settings (built in the worker, after gevent's patching)."""

from __future__ import annotations

import os
from typing import Any, List, Optional

TLS_RECORD_HANDSHAKE = 0x16  # the first byte of a TLS ClientHello


def check_files(certfile: Optional[str], keyfile: Optional[str],
                ca_certs: Optional[str]) -> List[str]:
    """Problems with the TLS files, as one-line messages (checked before any worker starts)."""
    problems = []
    if keyfile and not certfile:
        problems.append("--keyfile needs --certfile")
    for flag, path in (("--certfile", certfile), ("--keyfile", keyfile), ("--ca-certs", ca_certs)):
        if path and not os.access(path, os.R_OK):
            problems.append(f"{flag} {path!r} cannot be read")
    return problems


def server_context(certfile: str, keyfile: Optional[str], ca_certs: Optional[str],
                   cert_reqs: int) -> Any:
    """An SSLContext for serving; ValueError with one line if the files do not load."""
    import ssl  # imported here: the supervisor must not import ssl before gevent patches it

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(certfile, keyfile)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"cannot load the certificate {certfile!r}"
                         f"{f' and key {keyfile!r}' if keyfile else ''}: {exc}") from None
    context.verify_mode = (ssl.CERT_NONE, ssl.CERT_OPTIONAL, ssl.CERT_REQUIRED)[cert_reqs]
    if ca_certs:
        try:
            context.load_verify_locations(ca_certs)
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"cannot load the CA certificates {ca_certs!r}: {exc}") from None
    try:
        context.set_alpn_protocols(["http/1.1"])
    except NotImplementedError:
        pass
    return context
