"""Acknowledged means durable: every add that returned survives a SIGKILL of the process."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

from tests.inbox.conftest import OpenInbox

ROOT = Path(__file__).resolve().parents[2]

WRITER = """
import asyncio, sys
from pathlib import Path
from edge_runtime.inbox import Inbox
from edge_runtime.pubsub import Received

async def main() -> None:
    inbox = Inbox(Path(sys.argv[1]), commit_window_ms=2.0)
    await inbox.open()
    n = 0
    async def one(i: int) -> None:
        data = f"m{i}".encode()
        await inbox.add("p|t", Received("t", data, "t", {}), f"id-{i}")
        sys.stdout.write(f"{i}\\n")
        sys.stdout.flush()
    while True:  # concurrent adds, so batches are group-committed
        await asyncio.gather(*(one(n + k) for k in range(8)))
        n += 8

asyncio.run(main())
"""


async def test_every_acknowledged_add_survives_sigkill(
    tmp_path: Path, open_inbox: OpenInbox
) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", WRITER, str(tmp_path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.stdout is not None
    assert proc.stderr is not None
    acked: list[int] = []
    deadline = time.monotonic() + 15
    try:
        while len(acked) < 400 and time.monotonic() < deadline:
            line = await proc.stdout.readline()
            if not line:
                break
            acked.append(int(line))
    finally:
        proc.send_signal(signal.SIGKILL)
        stderr = (await proc.stderr.read()).decode()
        await proc.wait()
    assert len(acked) >= 400, stderr
    inbox = await open_inbox()
    rows = await inbox.head("p|t", 100_000)
    stored = {r.event_id for r in rows}
    assert {f"id-{i}" for i in acked} <= stored
    assert len(stored) == len(rows)  # each stored once
