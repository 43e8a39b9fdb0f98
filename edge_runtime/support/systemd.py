"""The service manager's notify protocol without libsystemd: READY, STOPPING, the watchdog.

``sd_notify`` is one datagram of ``KEY=value`` lines to the AF_UNIX socket named by
``$NOTIFY_SOCKET`` (a path, or ``@name`` in the abstract namespace). Everything here is a no-op
when that variable is unset, so the same code runs under systemd, in a container and in a shell.

The watchdog (``WatchdogSec=`` in the unit) is driven from the event loop on purpose: a loop
that is wedged (a blocking call, a stuck write to a full log pipe) stops the ``WATCHDOG=1``
pings, and systemd restarts the service. A ping from a thread would keep a dead loop alive.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger("edge_runtime.systemd")


def _address(env: Mapping[str, str]) -> str | None:
    address = env.get("NOTIFY_SOCKET", "")
    if not address:
        return None
    if address.startswith("@"):
        return "\0" + address[1:]
    return address


def notify(state: str) -> bool:
    """Send ``state`` (e.g. ``READY=1``); returns whether a socket was there to take it.

    Never raises and never blocks: a manager that is not listening, or whose queue is full,
    loses the message (systemd's own ``sd_notify`` behaves the same way).
    """
    address = _address(os.environ)
    if address is None:
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            sock.sendto(state.encode(), address)
    except OSError:
        return False
    return True


def watchdog_interval(env: Mapping[str, str] | None = None, pid: int | None = None) -> float | None:
    """Seconds between ``WATCHDOG=1`` pings, or ``None`` when no watchdog is asked for.

    Half of ``$WATCHDOG_USEC`` (systemd's advice: ping at least twice per period). Like
    ``sd_watchdog_enabled``, it is off when ``$WATCHDOG_USEC`` is unset, zero or malformed, or
    when ``$WATCHDOG_PID`` names another process (the variable leaked to a child).
    """
    env = os.environ if env is None else env
    if _address(env) is None:
        return None
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    if usec <= 0:
        return None
    owner = env.get("WATCHDOG_PID", "")
    if owner and owner != str(os.getpid() if pid is None else pid):
        return None
    return usec / 1_000_000 / 2


async def watchdog(interval: float) -> None:
    """Ping ``WATCHDOG=1`` every ``interval`` seconds until cancelled (run it as a task)."""
    log.info("systemd watchdog: pinging every %.1f s", interval)
    while True:
        notify("WATCHDOG=1")
        await asyncio.sleep(interval)


def start_watchdog() -> asyncio.Task[None] | None:
    """The watchdog task when the environment asks for one (see :func:`watchdog_interval`)."""
    interval = watchdog_interval()
    if interval is None:
        return None
    return asyncio.create_task(watchdog(interval), name="systemd-watchdog")


async def stop_watchdog(task: asyncio.Task[None] | None) -> None:
    """Cancel a task from :func:`start_watchdog` and wait for it (``None`` is fine)."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
