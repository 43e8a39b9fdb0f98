"""Wiring cloud sync into a sidecar, once every component is built.

For the ``cloudsync.grpc`` component (at most one): each store in ``stateStores`` (a
``state.sqlite`` component) starts logging its changes in its own transactions; when
``topics`` is set, the ``cloud`` outbox table is opened in ``outbox.db`` and every pub/sub
outbox copies the events that match into it in the publish's own transaction; then the client
starts. Its status joins ``/v1.0/metadata``. Nothing here imports grpc: the component does,
when it starts its client.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edge_runtime.api.universal import RuntimeView
from edge_runtime.cloudsync.changelog import TABLE, ChangeLog
from edge_runtime.cloudsync.hlc import HLC
from edge_runtime.cloudsync.sources import ChangeLogSource, OutboxSource, Source
from edge_runtime.cloudsync.status import StreamInfo
from edge_runtime.cloudsync.topics import TopicFilters
from edge_runtime.errors import StorageFullError
from edge_runtime.outbox.store import Item, Outbox
from edge_runtime.runtime.build import StartError
from edge_runtime.runtime.compstore import CompStore
from edge_runtime.support.sqlitedb import Database, DBError

__all__ = ["CLOUD_RELAY", "start_cloud_sync"]

log = logging.getLogger("edge_runtime.cloudsync")

CLOUD_RELAY = "cloud"


def _tee(pubsub: str, filters: TopicFilters, cloud: Outbox, hlc: HLC) -> Any:
    def copies(items: Sequence[Item]) -> list[tuple[Outbox, list[Item]]]:
        try:
            chosen = [
                Item(f"{pubsub}/{i.topic}", i.payload, {"hlc": str(hlc.now())})
                for i in items if filters.matches(pubsub, i.topic)
            ]
        except OSError as exc:  # the clock could not persist its lease: nothing is written
            kind = StorageFullError if exc.errno == errno.ENOSPC else DBError
            raise kind(f"cloud sync clock: cannot persist its lease: {exc}") from exc
        return [(cloud, chosen)] if chosen else []

    return copies


async def start_cloud_sync(
    components: CompStore, outbox_db: Database, view: RuntimeView,
) -> list[Any]:
    """Attach and start every ``cloudsync.grpc`` component; the started components.

    Raises :class:`StartError` for a ``stateStores`` entry that is not a loaded
    ``state.sqlite`` store, or for more than one ``cloudsync.grpc`` component.
    """
    comps = [c for c in components.loaded if c.manifest.type.lower() == "cloudsync.grpc"]
    if len(comps) > 1:
        raise StartError("only one cloudsync.grpc component may be configured, found "
                         + ", ".join(c.name for c in comps))
    started = []
    for loaded in comps:
        comp = loaded.instance
        sources: list[Source] = []
        streams: list[StreamInfo] = []
        for name in comp.settings.stores():
            state = components.state.get(name)
            log_changes = getattr(state.store, "log_changes", None) if state else None
            if state is None or log_changes is None:
                raise StartError(
                    f"{loaded.manifest.mark_of('spec.metadata')}: {loaded.manifest.describe()}:"
                    f" stateStores names {name!r}, which is not a loaded state.sqlite store")
            changelog = ChangeLog(name, comp.hlc)
            log_changes(changelog)
            db: Database = state.store.database  # type: ignore[attr-defined]
            source = ChangeLogSource(db, changelog, state.prefix)
            sources.append(source)
            streams.append(StreamInfo(source.stream, source.epoch, str(db.path or ""), TABLE,
                                      name))
        if comp.filters:
            o = comp.outbox_settings
            cloud = Outbox(outbox_db, CLOUD_RELAY, o.limits(), durable=o.durable)
            await cloud.open()
            for name, pubsub in components.pubsubs.items():
                pubsub.outbox.tee = _tee(name, comp.filters, cloud, comp.hlc)
            events = OutboxSource(cloud)
            sources.append(events)
            streams.append(StreamInfo(events.stream, events.epoch,
                                      str(outbox_db.path or Path()), cloud.table))
        comp.status.data_loss = list(view.data_loss)  # corrupt files quarantined at start
        await comp.start(sources)
        comp.status.streams = streams
        view.status_providers.append(comp.status.extended)
        log.info("cloud sync: device %s to %s; %d stream(s): %s", comp.device_id,
                 comp.settings.endpoint, len(sources), ", ".join(s.stream for s in sources))
        started.append(comp)
    return started
