"""A diagnostic TLS handshake, for when a library hides why a connection was refused.

grpc reports a server that refused our client certificate (TLS 1.3 sends that verdict after
the handshake completed on our side) as ``Socket closed``. :func:`probe` repeats the handshake
with Python's ``ssl`` and the same files, then reads once: the server's alert (certificate
expired, unknown CA, certificate required) arrives as an ``SSLError`` naming it. A grpc server
sends no alert, it just closes: that is reported as :data:`CLOSED_AFTER_HANDSHAKE` (a server
that accepts us sends its first HTTP/2 frame instead).

Blocking (one TCP connection, bounded by ``timeout``): call it in a thread. It never raises;
it is only ever called after a failure, not on the data path.
"""

from __future__ import annotations

import os
import socket
import ssl
import tempfile
from pathlib import Path

__all__ = ["CLOSED_AFTER_HANDSHAKE", "load_cert_chain_pem", "probe"]

CLOSED_AFTER_HANDSHAKE = ("the server closed the connection right after the TLS handshake,"
                          " without an alert")


def load_cert_chain_pem(context: ssl.SSLContext, cert: str, key: str) -> None:
    """``load_cert_chain`` from PEM text: ``ssl`` only reads files, so the PEMs go to a private
    (0700) temporary folder, are loaded, and the folder is removed at once (the context keeps
    them in memory). Raises ``ssl.SSLError``/``ValueError`` for unusable PEMs."""
    with tempfile.TemporaryDirectory(prefix="edge-runtime-tls-") as tmp:
        cert_path, key_path = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
        for path, text in ((cert_path, cert), (key_path, key)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="ascii") as f:
                f.write(text)
        context.load_cert_chain(cert_path, key_path)


def probe(host: str, port: int, *, ca: bytes, cert: bytes | None, key: bytes | None,
          server_name: str = "", alpn: tuple[str, ...] = ("h2",),
          timeout: float = 5.0) -> str | None:
    """The TLS error of one handshake plus one read with these credentials, or ``None`` when
    the server accepted them (then the trouble is elsewhere) or the TCP connection itself
    failed (that is not a TLS matter)."""
    try:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_verify_locations(cadata=ca.decode("ascii"))
        if cert is not None and key is not None:
            load_cert_chain_pem(context, cert.decode("ascii"), key.decode("ascii"))
        if alpn:
            context.set_alpn_protocols(list(alpn))
    except (ssl.SSLError, ValueError, OSError) as exc:
        return f"the certificate files are not usable: {exc}"
    try:
        raw = socket.create_connection((host, port), timeout=timeout)
    except OSError:
        return None
    handshaken = False
    try:
        with context.wrap_socket(raw, server_hostname=server_name or host) as tls:
            handshaken = True
            tls.settimeout(timeout)
            if not tls.recv(1):  # the server's verdict on our certificate, or its first frame
                return CLOSED_AFTER_HANDSHAKE
    except (ssl.SSLEOFError, ssl.SSLZeroReturnError, ConnectionResetError):
        return CLOSED_AFTER_HANDSHAKE if handshaken else None
    except ssl.SSLError as exc:
        return str(exc)
    except OSError:
        return None  # timed out, or the network failed: nothing to learn about TLS
    finally:
        raw.close()
    return None
