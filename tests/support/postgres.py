"""A throwaway PostgreSQL cluster for tests and benches: ``initdb`` into a temporary folder,
``pg_ctl start`` on a free loopback port with its unix socket in that folder, trust auth for
one user. Never the machine's own PostgreSQL. Started at most once per process
(:func:`cluster`) and stopped when the process exits.

As root the server runs as user ``nobody`` (PostgreSQL refuses to run as root).
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

__all__ = ["PgCluster", "cluster", "find_bin", "unavailable"]

USER = "edge"


def find_bin() -> Path | None:
    """The folder with ``initdb`` and ``pg_ctl``, or ``None``."""
    candidates = ["/usr/local/bin", *sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                                            reverse=True)]
    which = shutil.which("initdb")
    if which:
        candidates.insert(0, str(Path(which).parent))
    for folder in candidates:
        if all(os.access(Path(folder) / b, os.X_OK) for b in ("initdb", "pg_ctl", "postgres")):
            return Path(folder)
    return None


class PgCluster:
    """One cluster under ``root``; :meth:`start`, :meth:`dsn`, :meth:`create_db`, :meth:`stop`."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="edge-pg-"))
        self.data = self.root / "data"
        self.port = 0
        self._uid: int | None = 65534 if os.geteuid() == 0 else None

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(list(args), capture_output=True, text=True, check=False,
                              timeout=timeout, user=self._uid, cwd=self.root,
                              env={"PATH": f"{self.bindir}:/usr/bin:/bin", "LC_ALL": "C"})

    def start(self) -> None:
        """initdb and start; ``RuntimeError`` with PostgreSQL's words when it cannot."""
        if self._uid is not None:
            os.chown(self.root, self._uid, self._uid)
        done = self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-U", USER,
                         "--auth=trust", "--no-sync", "-E", "UTF8")
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed: {done.stderr.strip()[-2000:]}")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        opts = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
                " -c max_connections=200 -c shared_buffers=32MB")
        done = self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-o", opts,
                         "-l", str(self.root / "server.log"), "-w", "-t", "60", "start")
        if done.returncode != 0:
            log = (self.root / "server.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"pg_ctl start failed: {done.stderr.strip()} {log}")

    def dsn(self, database: str = "postgres") -> str:
        """A DSN over the unix socket."""
        return f"postgresql://{USER}@/{database}?host={self.root}&port={self.port}"

    def create_db(self, name: str | None = None) -> str:
        """A new empty database; its DSN."""
        name = name or "t" + uuid.uuid4().hex[:16]

        async def create() -> None:
            import asyncpg

            conn = await asyncpg.connect(self.dsn())
            try:
                await conn.execute(f'CREATE DATABASE "{name}"')
            finally:
                await conn.close()

        # Its own thread and loop: callers may be inside a running loop.
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, create()).result(60)
        return self.dsn(name)

    def stop(self) -> None:
        """Stop the server (fast) and remove its folder."""
        if self.data.exists():
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate",
                      "-w", "stop", timeout=60)
        shutil.rmtree(self.root, ignore_errors=True)


_cluster: PgCluster | None = None
_failed: str | None = None


def unavailable() -> str | None:
    """Why no cluster can be had here (``None``: :func:`cluster` works)."""
    global _cluster, _failed
    if _cluster is not None or _failed is not None:
        return _failed
    bindir = find_bin()
    if bindir is None:
        _failed = "no PostgreSQL binaries (initdb, pg_ctl) in /usr/local/bin or /usr/lib/postgresql"
        return _failed
    try:
        import asyncpg  # noqa: F401 - the store needs it
    except ImportError:
        _failed = "asyncpg is not installed (pip install 'edge-runtime[postgres]')"
        return _failed
    c = PgCluster(bindir)
    try:
        c.start()
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        with contextlib.suppress(Exception):
            c.stop()
        _failed = f"cannot start a throwaway PostgreSQL: {exc}"
        return _failed
    _cluster = c
    atexit.register(c.stop)
    return None


def cluster() -> PgCluster:
    """The process's cluster, started on first use; ``RuntimeError`` when there is none."""
    reason = unavailable()
    if reason is not None or _cluster is None:
        raise RuntimeError(reason)
    return _cluster
