"""Throwaway certificates for TLS tests, made by the ``openssl`` command (no new dependency).

::

    ca = CertAuthority(tmp_path / "ca")                 # a fresh CA (ECDSA P-256)
    server = ca.issue("broker", hosts=("127.0.0.1", "localhost"))
    client = ca.issue("device-1", client=True)
    old = ca.issue("old", client=True, expired=True)    # valid 2020-01-01 .. 2020-01-02
    server.cert, server.key, ca.cert                    # PEM file paths

Certificates are signed with ``openssl ca``, which alone (in OpenSSL 3.0) takes explicit
validity dates: that is how an expired certificate is made without touching any clock.
Every call runs openssl with a bounded wait; :func:`require_openssl` skips a test without it.
"""

from __future__ import annotations

import ipaddress
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

__all__ = ["CertAuthority", "Issued", "require_openssl"]

_EXPIRED = ("20200101000000Z", "20200102000000Z")
_VALID = ("20240101000000Z", "20991231235959Z")

_CA_CONFIG = """\
[ca]
default_ca = ca_default

[ca_default]
dir = {dir}
database = $dir/index.txt
new_certs_dir = $dir/issued
serial = $dir/serial
default_md = sha256
policy = policy_any
unique_subject = no
copy_extensions = none
email_in_dn = no

[policy_any]
commonName = supplied
"""


def require_openssl() -> str:
    """The openssl executable; skips the calling test when it is missing."""
    found = shutil.which("openssl")
    if found is None:
        pytest.skip("the openssl command is not installed (apt package openssl)")
    return found


@dataclass(frozen=True)
class Issued:
    """One certificate and its key (PEM files), and the CA file that verifies it."""

    cert: Path
    key: Path
    ca: Path


class CertAuthority:
    """A CA in ``workdir`` that issues leaf certificates (see the module docstring)."""

    def __init__(self, workdir: Path, name: str = "edge test CA") -> None:
        self.openssl = require_openssl()
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "issued").mkdir(exist_ok=True)
        (self.dir / "index.txt").write_text("")
        (self.dir / "serial").write_text("1000\n")
        self.config = self.dir / "ca.cnf"
        self.config.write_text(_CA_CONFIG.format(dir=self.dir))
        self.key = self.dir / "ca.key"
        self.cert = self.dir / "ca.pem"
        self._key(self.key)
        self._run(
            "req", "-x509", "-new", "-key", str(self.key), "-out", str(self.cert), "-days",
            "36500", "-sha256", "-subj", f"/CN={name}",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            "-addext", "subjectKeyIdentifier=hash",
        )

    def _run(self, *args: str) -> None:
        try:
            subprocess.run([self.openssl, *args], cwd=self.dir, check=True,
                           capture_output=True, timeout=30)
        except subprocess.CalledProcessError as exc:
            raise RuntimeError(
                f"openssl {' '.join(args[:2])} failed: {exc.stderr.decode(errors='replace')}"
            ) from None

    def _key(self, path: Path) -> None:
        self._run("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                  "-out", str(path))
        path.chmod(0o600)

    def issue(
        self, name: str, *, hosts: Sequence[str] = (), client: bool = False,
        peer: bool = False, expired: bool = False, out: Path | None = None,
    ) -> Issued:
        """A certificate with CN ``name`` signed by this CA: a server certificate for
        ``hosts`` (SANs; IP addresses or DNS names), with ``client`` a client certificate,
        with ``peer`` both (one file serving and calling, as on the internal gRPC port).
        ``expired``: valid from 2020-01-01 to 2020-01-02 only. Files ``<name>.pem`` and
        ``<name>.key`` go to ``out`` (default: the CA's folder); an existing pair is
        overwritten (a rotation)."""
        where = out or self.dir
        where.mkdir(parents=True, exist_ok=True)
        key, cert = where / f"{name}.key", where / f"{name}.pem"
        csr, ext = self.dir / f"{name}.csr", self.dir / f"{name}.ext"
        self._key(key)
        self._run("req", "-new", "-key", str(key), "-out", str(csr), "-subj", f"/CN={name}")
        lines = ["basicConstraints=critical,CA:FALSE",
                 "keyUsage=critical,digitalSignature,keyEncipherment",
                 "authorityKeyIdentifier=keyid", "subjectKeyIdentifier=hash",
                 "extendedKeyUsage=" + ("serverAuth,clientAuth" if peer else
                                        "clientAuth" if client else "serverAuth")]
        sans = [f"IP:{h}" if _is_ip(h) else f"DNS:{h}" for h in hosts]
        if sans:
            lines.append("subjectAltName=" + ",".join(sans))
        ext.write_text("[leaf]\n" + "\n".join(lines) + "\n")
        start, end = _EXPIRED if expired else _VALID
        self._run("ca", "-batch", "-config", str(self.config), "-cert", str(self.cert),
                  "-keyfile", str(self.key), "-in", str(csr), "-out", str(cert), "-notext",
                  "-startdate", start, "-enddate", end, "-extfile", str(ext),
                  "-extensions", "leaf")
        csr.unlink()
        ext.unlink()
        return Issued(cert, key, self.cert)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
