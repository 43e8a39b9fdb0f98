"""The app started after ``--`` (as ``dapr run`` does) and waiting for the app's port."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Mapping, Sequence

log = logging.getLogger("edge_runtime.app")


class AppProcess:
    """One child process with the Dapr environment; signals are forwarded to it."""

    def __init__(self, argv: Sequence[str], env: Mapping[str, str]) -> None:
        self.argv = list(argv)
        self.env = dict(env)
        self.proc: asyncio.subprocess.Process | None = None
        self._signalled = False

    async def start(self) -> None:
        """Start the app; raises ``OSError`` (with the command named) when it cannot run."""
        try:
            self.proc = await asyncio.create_subprocess_exec(*self.argv, env=self.env)
        except OSError as exc:
            raise OSError(f"cannot start the app {self.argv[0]!r}: {exc.strerror or exc}") from exc
        log.info("started the app (pid %d): %s", self.proc.pid, " ".join(self.argv))

    async def wait(self) -> int:
        """The app's exit code (128+N for a signal N, as a shell reports it)."""
        assert self.proc is not None
        code = await self.proc.wait()
        return 128 - code if code < 0 else code

    def send_signal(self, signum: int) -> None:
        """Forward a signal if the app still runs."""
        if self.proc is not None and self.proc.returncode is None:
            self._signalled = True
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signum)

    async def stop(self, grace_s: float) -> int | None:
        """SIGTERM (unless a signal was already forwarded), then SIGKILL after ``grace_s``.

        Returns the exit code, or ``None`` if the app never started. A second SIGTERM is not
        sent: it could land while the app runs its own exit path and kill it mid-way.
        """
        if self.proc is None:
            return None
        if self.proc.returncode is None:
            if not self._signalled:
                self.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), grace_s)
            except TimeoutError:
                log.warning("the app did not exit within %.1fs of SIGTERM; killing it", grace_s)
                self.send_signal(signal.SIGKILL)
        return await self.wait()


async def wait_for_port(host: str, port: int, *, interval_s: float = 0.1) -> None:
    """Dial ``host:port`` every ``interval_s`` until a TCP connection succeeds (as daprd does)."""
    attempts = 0
    while True:
        try:
            _reader, writer = await asyncio.open_connection(host, port)
        except OSError:
            attempts += 1
            if attempts % 50 == 0:
                log.info("still waiting for the app on %s:%d", host, port)
            await asyncio.sleep(interval_s)
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return


def app_env(
    base: Mapping[str, str], *, http_port: int, grpc_port: int, app_id: str, app_port: int | None
) -> dict[str, str]:
    """The app's environment: ours plus ``DAPR_HTTP_PORT``, ``DAPR_GRPC_PORT``, ``APP_ID``,
    ``APP_PORT``."""
    env = dict(base)
    env.update(DAPR_HTTP_PORT=str(http_port), DAPR_GRPC_PORT=str(grpc_port), APP_ID=app_id)
    if app_port is not None:
        env["APP_PORT"] = str(app_port)
    # systemd readiness and the watchdog are ours to report, not the app's.
    for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        env.pop(name, None)
    return env
