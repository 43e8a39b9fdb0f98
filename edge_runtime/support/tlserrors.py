"""What a failed TLS handshake means, in words an operator can act on.

OpenSSL (Python's ``ssl``, so MQTT) and BoringSSL (grpc, so cloud sync) report a refused
handshake as terse reason strings; which side refused decides what to fix. :func:`explain`
maps the reasons we know to one sentence naming the side and the setting to check, and
:func:`is_tls_error` says whether a text is a TLS failure at all (the metric label ``tls``).

The table is ordered: the first matching entry wins, so the specific reasons come first.
Matching is on lower-cased substrings, because the same reason arrives as
``CERTIFICATE_VERIFY_FAILED ... certificate has expired`` from one library and
``SSLV3_ALERT_CERTIFICATE_EXPIRED`` from another.
"""

from __future__ import annotations

__all__ = ["explain", "is_tls_error"]

# (substrings that must all appear, the explanation)
_REASONS: tuple[tuple[tuple[str, ...], str], ...] = (
    # Our own certificate, judged here (tlsprobe): before the server entries, which would
    # match the same words.
    (("our own client certificate has expired",),
     "our client certificate has expired, and the server refused it (renew clientCert)"),
    (("our own client certificate is not valid yet",),
     ("our client certificate is not valid yet, and the server refused it (is this device's"
     " clock set?)")),
    # Our side refused the server's certificate (the verify result is in the message).
    (("certificate has expired",),
     "the server's certificate has expired (or this device's clock is wrong)"),
    (("certificate is not yet valid",),
     "the server's certificate is not valid yet (is this device's clock set?)"),
    (("hostname mismatch",),
     ("the server's certificate does not name the host we connect to (check the url/endpoint,"
     " or the expected server name)")),
    (("hostname verification",),
     ("the server's certificate does not name the host we expect (check serverName or the"
     " endpoint)")),
    (("ip address mismatch",),
     ("the server's certificate does not name the IP address we connect to (check the"
     " url/endpoint, or the expected server name)")),
    (("self-signed certificate",),
     "the server's certificate is not signed by a CA we trust (check caCert)"),
    (("unable to get local issuer certificate",),
     "the server's certificate is not signed by a CA we trust (check caCert)"),
    (("peer did not return a certificate",),
     "the server did not send a certificate"),
    # The server refused our client certificate (a TLS alert it sent us).
    (("alert", "certificate required"),
     ("the server requires a client certificate and we sent none (set clientCert and"
     " clientKey)")),
    (("alert", "certificate expired"),
     "the server refused our client certificate: it has expired (renew clientCert)"),
    (("alert", "unknown ca"),
     "the server does not trust the CA that signed our client certificate (clientCert)"),
    (("alert", "bad certificate"),
     "the server refused our certificate (clientCert)"),
    (("alert", "certificate unknown"),
     "the server refused our certificate (clientCert)"),
    (("alert", "unsupported certificate"),
     "the server refused our certificate: unsupported type or key usage (clientCert)"),
    (("alert", "decrypt error"),
     "the TLS handshake failed: the certificate and key may not match (clientKey)"),
    (("alert", "handshake failure"),
     "the TLS handshake failed: no common protocol version or cipher"),
    (("alert", "protocol version"),
     "the TLS handshake failed: no common protocol version (we need TLS 1.2 or later)"),
    (("closed the connection right after the tls handshake",),
     ("the server refused our client certificate without saying why: expired, not signed by"
     " a CA it trusts, or not sent (check clientCert)")),
    (("wrong version number",),
     "the server does not speak TLS on this port (a plain listener? check the url scheme)"),
    # BoringSSL (grpc) says less; these are its words for the same failures.
    (("certificate_verify_failed",),
     ("the server's certificate was refused: not signed by the CA we trust (caCert), expired,"
     " or for another name")),
    (("tlsv1_alert_unknown_ca",),
     "the server does not trust the CA that signed our client certificate (clientCert)"),
    (("sslv3_alert_certificate_expired",),
     "the server refused our client certificate: it has expired (renew clientCert)"),
    (("tlsv13_alert_certificate_required",),
     "the server requires a client certificate and we sent none"),
    (("sslv3_alert_bad_certificate",),
     "the server refused our certificate (clientCert)"),
)

_TLS_WORDS = ("ssl", "tls", "certificate", "handshake")


def explain(text: str) -> str | None:
    """The explanation of the first reason found in ``text``, or ``None``."""
    low = text.lower()
    for needles, meaning in _REASONS:
        if all(n in low for n in needles):
            return meaning
    return None


def is_tls_error(text: str) -> bool:
    """Whether ``text`` reports a TLS failure (a known reason, or TLS words in it)."""
    low = text.lower()
    return explain(text) is not None or any(w in low for w in _TLS_WORDS)
