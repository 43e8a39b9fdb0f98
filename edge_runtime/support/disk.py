"""The data dir's disk budget (``--max-disk-mb``) and the disk-full check shared by all stores."""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

from edge_runtime.errors import StorageFullError

# Keep this much free on the filesystem even without a budget: SQLite needs room to commit
# (and to roll back), and a device whose SD card is full stops booting cleanly.
MIN_FREE_BYTES = 8 * 1024 * 1024


class DiskBudget:
    """Checks a write against the data dir's budget and the filesystem's free space.

    Sizes are re-read at most every ``refresh_s`` seconds (thread-safe; called from writer
    threads), so a check costs a clock read on the hot path.
    """

    def __init__(
        self,
        data_dir: Path,
        max_bytes: int | None,
        *,
        refresh_s: float = 1.0,
        min_free_bytes: int = MIN_FREE_BYTES,
    ) -> None:
        self.data_dir = data_dir
        self.max_bytes = max_bytes
        self.min_free_bytes = min_free_bytes
        self._refresh_s = refresh_s
        self._lock = threading.Lock()
        self._checked_at = -1e9
        self._used = 0
        self._free = 1 << 62

    def _refresh(self) -> None:
        now = time.monotonic()
        if now - self._checked_at < self._refresh_s:
            return
        used = 0
        for root, _dirs, files in os.walk(self.data_dir):
            for name in files:
                try:
                    used += os.stat(os.path.join(root, name)).st_size
                except OSError:
                    continue
        try:
            free = shutil.disk_usage(self.data_dir).free
        except OSError:
            free = 1 << 62
        self._used, self._free, self._checked_at = used, free, now

    def used_bytes(self) -> int:
        """Bytes used under the data dir (as of the last refresh)."""
        with self._lock:
            self._refresh()
            return self._used

    def invalidate(self) -> None:
        """Force the next check to re-read sizes (after a large write or a reclaim)."""
        with self._lock:
            self._checked_at = -1e9

    def check(self, incoming: int = 0) -> None:
        """Raise :class:`StorageFullError` if ``incoming`` more bytes would not fit."""
        with self._lock:
            self._refresh()
            if self.max_bytes is not None and self._used + incoming > self.max_bytes:
                raise StorageFullError(
                    f"the data dir {self.data_dir} is over its disk budget"
                    f" ({self._used + incoming} of {self.max_bytes} bytes, --max-disk-mb)"
                )
            if self._free - incoming < self.min_free_bytes:
                raise StorageFullError(
                    f"the disk holding {self.data_dir} is full ({self._free} bytes free)"
                )
