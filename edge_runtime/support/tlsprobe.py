"""A diagnostic TLS handshake, for when a library hides why a connection was refused.

grpc reports a server that refused our client certificate (TLS 1.3 sends that verdict after
the handshake completed on our side) as ``Socket closed``. :func:`probe` repeats the handshake
with Python's ``ssl`` and the same files, then reads once: the server's alert (certificate
expired, unknown CA, certificate required) arrives as an ``SSLError`` naming it. A grpc server
sends no alert, it just closes: that is reported as :data:`CLOSED_AFTER_HANDSHAKE` (a server
that accepts us sends its first HTTP/2 frame instead), and our own certificate's dates are then
checked here (:func:`own_certificate_problem`): an expired one is the usual reason, and the one
we can tell without the server's CA.

Blocking (one TCP connection, bounded by ``timeout``): call it in a thread. It never raises;
it is only ever called after a failure, not on the data path.
"""

from __future__ import annotations

import os
import socket
import ssl
from pathlib import Path

__all__ = ["CLOSED_AFTER_HANDSHAKE", "load_cert_chain_pem", "own_certificate_problem", "probe"]

CLOSED_AFTER_HANDSHAKE = ("the server closed the connection right after the TLS handshake,"
                          " without an alert")


def load_cert_chain_pem(context: ssl.SSLContext, cert: str, key: str) -> None:
    """``load_cert_chain`` from PEM text: ``ssl`` only reads files, so the PEMs go to a private
    (0700) temporary folder, are loaded, and the folder is removed at once (the context keeps
    them in memory). Raises ``ssl.SSLError``/``ValueError`` for unusable PEMs."""
    import tempfile  # here: only with PEMs given inline (0.2 MiB of RSS for every sidecar)

    with tempfile.TemporaryDirectory(prefix="edge-runtime-tls-") as tmp:
        cert_path, key_path = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
        for path, text in ((cert_path, cert), (key_path, key)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="ascii") as f:
                f.write(text)
        context.load_cert_chain(cert_path, key_path)


def own_certificate_problem(cert: bytes, key: bytes) -> str | None:
    """Whether our own certificate is outside its validity dates (by this device's clock):
    ``"our own client certificate has expired"`` or ``"... is not valid yet"``, else ``None``.

    It has OpenSSL verify the certificate as a server would, in memory: two TLS ends joined
    by memory BIOs, the certificate on both, trusted as itself (partial chain), so only its
    dates and usage are judged; which CA the server trusts cannot be known here.
    """
    try:
        server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server.verify_mode = ssl.CERT_REQUIRED
        server.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
        server.load_verify_locations(cadata=cert.decode("ascii"))
        client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        client.check_hostname = False
        client.verify_mode = ssl.CERT_NONE
        for context in (server, client):
            load_cert_chain_pem(context, cert.decode("ascii"), key.decode("ascii"))
    except (ssl.SSLError, ValueError, OSError):
        return None
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    ends = [client.wrap_bio(c_in, c_out), server.wrap_bio(s_in, s_out, server_side=True)]
    for _ in range(8):  # a TLS 1.3 handshake takes two round trips
        for end in ends:
            try:
                end.do_handshake()
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLCertVerificationError as exc:
                text = str(exc.verify_message or exc).lower()
                if "expired" in text:
                    return "our own client certificate has expired"
                if "not yet valid" in text:
                    return "our own client certificate is not valid yet"
                return None
            except ssl.SSLError:
                return None
        s_in.write(c_out.read())
        c_in.write(s_out.read())
    return None


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
                return _closed(cert, key)
    except (ssl.SSLEOFError, ssl.SSLZeroReturnError, ConnectionResetError):
        return _closed(cert, key) if handshaken else None
    except ssl.SSLError as exc:
        return str(exc)
    except OSError:
        return None  # timed out, or the network failed: nothing to learn about TLS
    finally:
        raw.close()
    return None


def _closed(cert: bytes | None, key: bytes | None) -> str:
    own = own_certificate_problem(cert, key) if cert is not None and key is not None else None
    return f"{CLOSED_AFTER_HANDSHAKE}; {own}" if own else CLOSED_AFTER_HANDSHAKE
