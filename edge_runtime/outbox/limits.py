"""Outbox settings a pub/sub component's metadata may carry (read by the runtime)."""

from __future__ import annotations

from dataclasses import dataclass

from edge_runtime.config.manifest import ComponentManifest
from edge_runtime.config.metadata import ResolvedMetadata, decode, meta
from edge_runtime.outbox.store import OutboxLimits


@dataclass(frozen=True)
class OutboxMetadata:
    """``maxMessages``, ``maxBytes``, ``onFull`` and ``drainRateLimit`` (DESIGN.md §5), and
    ``durability`` (``full``/``normal``; empty: the process-wide ``--durability``)."""

    max_messages: int = meta("maxMessages", kind="int", default=1_000_000, minimum=1)
    max_bytes: int = meta("maxBytes", kind="int", default=256 * 1024 * 1024, minimum=1024)
    on_full: str = meta("onFull", kind="choice", choices=("reject", "dropOldest"),
                        default="reject")
    drain_rate_limit: float | None = meta("drainRateLimit", kind="float", minimum=0.001)
    durability: str = meta("durability", kind="choice", choices=("full", "normal"),
                           default="")

    @property
    def durable(self) -> bool | None:
        """Whether appends are fsynced before the publish is acknowledged (None: as the
        process-wide ``--durability`` says)."""
        return None if not self.durability else self.durability == "full"

    def limits(self) -> OutboxLimits:
        """As the store's limits."""
        if self.on_full == "dropOldest":
            return OutboxLimits(self.max_messages, self.max_bytes, "dropOldest")
        return OutboxLimits(self.max_messages, self.max_bytes, "reject")


def outbox_metadata(md: ResolvedMetadata, manifest: ComponentManifest) -> OutboxMetadata:
    """Decode the outbox entries; raises ``MetadataError`` with file:line for bad values."""
    return decode(OutboxMetadata, md, manifest)
