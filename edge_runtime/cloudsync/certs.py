"""``edge-runtime cloud certs``: a CA, a server certificate and device certificates for a small
fleet, made by the ``openssl`` command (the ``cryptography`` package is not a dependency).

Each device certificate's CN is the device id (the cloud refuses a stream whose Hello names
another device); the server certificate has the given DNS names and IP addresses as SANs.
Keys are ECDSA P-256, written with mode 0600. An existing CA in the folder is reused, so more
devices can be added later.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

__all__ = ["make_certs"]


def _run(cwd: Path, *args: str) -> None:
    try:
        subprocess.run(["openssl", *args], cwd=cwd, check=True,  # noqa: S607 - from PATH
                       capture_output=True)
    except subprocess.CalledProcessError as exc:
        raise OSError(f"openssl {args[0]} failed: {exc.stderr.decode(errors='replace')}") from None


def _key(cwd: Path, name: str) -> None:
    _run(cwd, "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-out", name)
    os.chmod(cwd / name, 0o600)


def _sign(cwd: Path, name: str, subject: str, ext: str, days: int) -> None:
    _key(cwd, f"{name}.key")
    _run(cwd, "req", "-new", "-key", f"{name}.key", "-out", f"{name}.csr", "-subj", subject)
    (cwd / f"{name}.ext").write_text(ext)
    _run(cwd, "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
         "-CAcreateserial", "-out", f"{name}.pem", "-days", str(days), "-sha256",
         "-extfile", f"{name}.ext")
    (cwd / f"{name}.csr").unlink()
    (cwd / f"{name}.ext").unlink()


def make_certs(out: Path, devices: Sequence[str], *, server_names: Sequence[str] = (
        "localhost", "127.0.0.1"), days: int = 825) -> list[Path]:
    """Write ``ca.pem``/``ca.key``, ``server.pem``/``server.key`` and ``<device>.pem``/
    ``<device>.key`` into ``out``; the files written. Raises ``OSError`` (no openssl, a
    failing step) and ``ValueError`` (a device id that cannot be a file name)."""
    if shutil.which("openssl") is None:
        raise OSError("the openssl command is needed to make certificates")
    for d in devices:
        if not d or "/" in d or d.startswith("."):
            raise ValueError(f"{d!r} cannot be a device id here")
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    if not (out / "ca.pem").exists():
        _key(out, "ca.key")
        _run(out, "req", "-x509", "-new", "-key", "ca.key", "-out", "ca.pem", "-days",
             str(days), "-sha256", "-subj", "/CN=edge-runtime fleet CA")
        written += [out / "ca.pem", out / "ca.key"]
    sans = []
    for n in server_names:
        try:
            ipaddress.ip_address(n)
            sans.append(f"IP:{n}")
        except ValueError:
            sans.append(f"DNS:{n}")
    _sign(out, "server", f"/CN={server_names[0] if server_names else 'cloud'}",
          f"subjectAltName={','.join(sans)}\nextendedKeyUsage=serverAuth\n", days)
    written += [out / "server.pem", out / "server.key"]
    for d in devices:
        _sign(out, d, f"/CN={d}", "extendedKeyUsage=clientAuth\n", days)
        written += [out / f"{d}.pem", out / f"{d}.key"]
    return written
