"""Sidecar-to-sidecar invocation over mutual TLS (``--internal-tls-*``): each refusal named.

Sidecar B serves the internal gRPC port with its certificate; sidecar A calls it with its
own (one certificate per node serves and calls). For each broken certificate the call
through A answers 500 with an error that says which certificate was refused and why, A logs
it, and B's app is never reached. The happy path is ``tests/e2e/test_invoke_e2e.py``.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.appchannel.appserver import AppServer
from tests.invocation.echoapp import echo
from tests.invocation.procs import Sidecar, name_table
from tests.support.certs import CertAuthority, Issued

pytestmark = pytest.mark.slow


@dataclass
class Certs:
    ca: CertAuthority
    other: CertAuthority

    def node(self, name: str, *, expired: bool = False) -> Issued:
        return self.ca.issue(name, hosts=("127.0.0.1", "localhost"), peer=True, expired=expired)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    root = tmp_path_factory.mktemp("invoke-certs")
    return Certs(CertAuthority(root / "ca", "node CA"), CertAuthority(root / "other", "other"))


def flags(cert: Issued, ca: Path) -> tuple[str, ...]:
    return ("--internal-tls-cert", str(cert.cert), "--internal-tls-key", str(cert.key),
            "--internal-tls-ca", str(ca))


@dataclass(frozen=True)
class Case:
    """The certificates of the callee (b) and the caller (a), and the CA a trusts."""

    b: Callable[[Certs], Issued]
    a: Callable[[Certs], Issued]
    a_trusts: Callable[[Certs], Path]
    words: str


CLIENT_REFUSED = "the server refused our client certificate without saying why"
CASES = {
    "caller certificate expired": Case(
        lambda c: c.node("b"), lambda c: c.node("a-old", expired=True), lambda c: c.ca.cert,
        "our client certificate has expired, and the server refused it"),
    "caller certificate from another CA": Case(
        lambda c: c.node("b"), lambda c: c.other.issue("a", hosts=("127.0.0.1",), peer=True),
        lambda c: c.ca.cert, CLIENT_REFUSED),
    "callee not trusted (wrong CA)": Case(
        lambda c: c.node("b"), lambda c: c.node("a"), lambda c: c.other.cert,
        "not signed by a CA we trust"),
    "callee certificate expired": Case(
        lambda c: c.node("b-old", expired=True), lambda c: c.node("a"), lambda c: c.ca.cert,
        "the server's certificate has expired"),
    "callee certificate for another name": Case(
        lambda c: c.ca.issue("b", hosts=("example.com",), peer=True), lambda c: c.node("a"),
        lambda c: c.ca.cert, "does not name the IP address"),
}


@pytest.fixture
async def cleanup() -> AsyncIterator[list[Sidecar]]:
    started: list[Sidecar] = []
    yield started
    for s in started:
        await s.stop()


# `make test` runs this refusal; `make faults` every one (each ~5-10 s).
SHORT = {"caller certificate expired"}


@pytest.mark.parametrize("case", [
    pytest.param(case, id=case.replace(" ", "-"),
                 marks=() if case in SHORT else (pytest.mark.faults_long,))
    for case in CASES
])
async def test_refusal_is_named(tmp_path: Path, certs: Certs, cleanup: list[Sidecar],
                                case: str) -> None:
    c = CASES[case]
    async with AppServer(echo("b")) as app_b:
        b = Sidecar(tmp_path, "b", args=("--app-port", str(app_b.port), "--internal-grpc-port",
                                         "0", *flags(c.b(certs), certs.ca.cert)))
        cleanup.append(b)
        await b.start()
        config = name_table(tmp_path / "config.yaml", {"b": b.internal})
        a = Sidecar(tmp_path, "a", args=("--config", str(config),
                                         *flags(c.a(certs), c.a_trusts(certs))))
        cleanup.append(a)
        await a.start()
        async with httpx.AsyncClient(timeout=60) as client:
            r = await client.get(f"{a.url}/v1.0/invoke/b/method/secure")
        assert r.status_code == 500, r.text
        message = r.json()["message"]
        assert "could not reach its sidecar" in message, message
        assert "TLS failed" in message, message
        assert c.words in message, message
        assert c.words in a.log.read_text()
        assert not [q for q in app_b.requests if q.path == "/secure"]
        print(f"{case}: {message[:240]}")


async def test_renewed_caller_certificate_is_used_at_the_next_call(
    tmp_path: Path, certs: Certs, cleanup: list[Sidecar],
) -> None:
    """A's expired certificate is refused; renewed on disk (renamed over), the next call
    succeeds without restarting A."""
    mine = tmp_path / "a-certs"
    mine.mkdir()
    expired = certs.node("a-old", expired=True)
    for src, name in ((expired.cert, "a.pem"), (expired.key, "a.key")):
        shutil.copyfile(src, mine / name)
    a_files = Issued(mine / "a.pem", mine / "a.key", certs.ca.cert)
    async with AppServer(echo("b")) as app_b:
        b = Sidecar(tmp_path, "b", args=("--app-port", str(app_b.port), "--internal-grpc-port",
                                         "0", *flags(certs.node("b"), certs.ca.cert)))
        cleanup.append(b)
        await b.start()
        config = name_table(tmp_path / "config.yaml", {"b": b.internal})
        a = Sidecar(tmp_path, "a", args=("--config", str(config),
                                         *flags(a_files, certs.ca.cert)))
        cleanup.append(a)
        await a.start()
        async with httpx.AsyncClient(timeout=60) as client:
            r = await client.get(f"{a.url}/v1.0/invoke/b/method/first")
            assert r.status_code == 500, r.text
            assert "our client certificate has expired" in r.json()["message"]
            renewed = certs.node("a-new")
            for src, name in ((renewed.cert, "a.pem"), (renewed.key, "a.key")):
                shutil.copyfile(src, mine / f"{name}.new")
                (mine / f"{name}.new").replace(mine / name)
            r = await client.get(f"{a.url}/v1.0/invoke/b/method/second")
        assert r.status_code == 200, r.text
        assert "certificate files changed: reloaded" in a.log.read_text()
        assert [q.path for q in app_b.requests if q.path in ("/first", "/second")] == ["/second"]
