"""The words for refused TLS handshakes, on the texts OpenSSL (ssl, paho) and BoringSSL (grpc)
really produce (copied from the sidecar logs of tests/faults/test_tls_*.py)."""

from __future__ import annotations

import pytest

from edge_runtime.support.tlserrors import explain, is_tls_error
from edge_runtime.support.tlsprobe import CLOSED_AFTER_HANDSHAKE

CASES = [
    (("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: self-signed certificate in"
     " certificate chain (_ssl.c:1006)"), "not signed by a CA we trust"),
    (("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: certificate has expired"
     " (_ssl.c:1006)"), "the server's certificate has expired"),
    (("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: IP address mismatch,"
     " certificate is not valid for '127.0.0.1'. (_ssl.c:1006)"), "does not name the IP address"),
    (("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: Hostname mismatch, certificate"
     " is not valid for 'broker.local'. (_ssl.c:1006)"), "does not name the host"),
    ("[SSL: SSLV3_ALERT_CERTIFICATE_EXPIRED] sslv3 alert certificate expired (_ssl.c:2580)",
     "refused our client certificate: it has expired"),
    ("[SSL: TLSV1_ALERT_UNKNOWN_CA] tlsv1 alert unknown ca (_ssl.c:2580)",
     "does not trust the CA that signed our client certificate"),
    ("[SSL: TLSV13_ALERT_CERTIFICATE_REQUIRED] tlsv13 alert certificate required (_ssl.c:2580)",
     "requires a client certificate and we sent none"),
    (("failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:42691: Tls"
     " handshake failed (TSI_PROTOCOL_FAILURE): SSL_ERROR_SSL: error:1000007d:SSL routines:"
     "OPENSSL_internal:CERTIFICATE_VERIFY_FAILED: unable to get local issuer certificate: OK"),
     "not signed by a CA we trust"),
    (("failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:39005: Tls"
     " handshake failed (TSI_PROTOCOL_FAILURE): SSL_ERROR_SSL: error:1000007d:SSL routines:"
     "OPENSSL_internal:CERTIFICATE_VERIFY_FAILED: certificate has expired: OK"),
     "the server's certificate has expired"),
    (("failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:33605: Custom"
     " verification check failed with error: UNAUTHENTICATED: Hostname Verification Check"
     " failed."), "does not name the host we expect"),
    (CLOSED_AFTER_HANDSHAKE, "refused our client certificate without saying why"),
    (f"{CLOSED_AFTER_HANDSHAKE}; our own client certificate has expired",
     "our client certificate has expired, and the server refused it"),
]


@pytest.mark.parametrize(("text", "words"), CASES)
def test_known_reasons_are_explained(text: str, words: str) -> None:
    meaning = explain(text)
    assert meaning is not None
    assert words in meaning
    assert is_tls_error(text)


@pytest.mark.parametrize("text", [
    "[Errno 111] Connection refused",
    ("failed to connect to all addresses; last error: UNAVAILABLE: ipv4:127.0.0.1:9:"
    " Connection refused"),
    "timed out",
])
def test_other_failures_are_not_tls(text: str) -> None:
    assert explain(text) is None
    assert not is_tls_error(text)
