"""The kernel's boot id: with monotonic time it makes deadlines that survive wall-clock jumps.

``time.monotonic`` on Linux is ``CLOCK_MONOTONIC``: shared by every process of one boot and
reset by a reboot, which the boot id (``/proc/sys/kernel/random/boot_id``) tells apart. The
outbox and the inbox both store (deadline, boot id) pairs (DESIGN.md §5).
"""

from __future__ import annotations

import uuid
from pathlib import Path

BOOT_ID_FILE = Path("/proc/sys/kernel/random/boot_id")
_PROCESS_BOOT = f"process-{uuid.uuid4()}"


def read_boot_id(path: Path = BOOT_ID_FILE) -> str:
    """The kernel's boot id; without one (not Linux), an id unique to this process, so a
    restart is taken as a new boot (deadlines then restart from what remained: never early)."""
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return _PROCESS_BOOT
    return text or _PROCESS_BOOT
