"""Corruption at start: every database of a sidecar (outbox, inbox, a state store, the cloud
sync desired-state file), truncated, with a garbled header, with garbage in the middle, and
with garbage in its ``-wal``, then a real sidecar process started on it.

What DESIGN.md §5 promises, checked through every channel: the sidecar starts; the damaged
file is moved with its ``-wal``/``-shm`` to ``<data-dir>/quarantine/<name>.<utc-ts>`` (never
deleted); a fresh one works (a damaged ``-wal`` alone: the set is *copied* there and the file
opened with the transactions before the damage, which SQLite would otherwise drop silently);
the loss is reported in the log, the ``edge_runtime_db_quarantined_total`` metric,
``/v1.0/metadata`` (``extended.dataLoss``) and the cloud sync status (``cloudsync.json``, read
by ``edge-runtime cloud status``); the databases that were not damaged keep their data.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import sqlite3
import textwrap
from pathlib import Path

import pytest

from tests.faults._storage import pubsub_component
from tests.support.components import SQLITE_STATESTORE
from tests.support.mosquitto import Mosquitto, free_port, require_mosquitto
from tests.support.sidecar import SidecarProcess

pytestmark = pytest.mark.broker

STATE_KEYS = 60
INBOX_MESSAGES = 60
OUTBOX_MESSAGES = 60
PAD = "x" * 900  # rows of ~1 KB: each table spans many pages

# file name -> the name the metric labels it with
DATABASES = {"outbox.db": "outbox", "inbox.db": "inbox", "state.db": "state.statestore",
             "cloud.db": "cloud"}


def resources(broker_url: str, cloud_port: int) -> str:
    """MQTT pubsub, a declarative subscription (to an app that is not there, so incoming
    messages wait in the inbox), a SQLite state store and cloud sync to a closed port."""
    return pubsub_component(broker_url, "corrupt-dev") + textwrap.dedent("""
        ---
        apiVersion: dapr.io/v2alpha1
        kind: Subscription
        metadata: {name: held}
        spec:
          pubsubname: mqtt
          topic: corrupt/in
          routes: {default: /in}
        ---
    """) + SQLITE_STATESTORE + textwrap.dedent(f"""\
        ---
        apiVersion: dapr.io/v1alpha1
        kind: Component
        metadata: {{name: cloud}}
        spec:
          type: cloudsync.grpc
          version: v1
          metadata:
          - {{name: endpoint, value: "127.0.0.1:{cloud_port}"}}
          - {{name: deviceID, value: corrupt-dev}}
          - {{name: token, value: t0ken}}
          - {{name: stateStores, value: statestore}}
          - {{name: retryMinDelay, value: 1s}}
          - {{name: retryMaxDelay, value: 5s}}
    """)


async def wait_until(check: object, limit_s: float = 20) -> None:
    for _ in range(int(limit_s * 10)):
        if await check():  # type: ignore[operator]
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {check}")


async def populate(root: Path) -> tuple[Path, Path]:
    """Two data dirs with every database holding rows: ``clean`` (stopped with SIGTERM:
    WALs checkpointed) and ``crashed`` (kill -9 during writes: the WALs hold frames)."""
    broker = Mosquitto(root / "broker")
    broker.start()
    app_port = free_port()  # nothing listens: subscribed messages stay in the inbox
    dev = SidecarProcess(root, "dev", resources(broker.url, free_port()), app_port,
                         log_level="warn")
    try:
        await dev.start()
        async with dev.client(timeout=10) as c:
            for i in range(INBOX_MESSAGES):
                r = await c.post("/v1.0/publish/mqtt/corrupt/in", json={"i": i, "pad": PAD})
                assert r.status_code == 204
            for i in range(0, STATE_KEYS, 10):
                r = await c.post("/v1.0/state/statestore", json=[
                    {"key": f"k{j}", "value": {"j": j, "pad": PAD}} for j in range(i, i + 10)])
                assert r.status_code == 204

            async def inbox_full() -> bool:
                return await dev.metric("edge_runtime_inbox_messages") >= INBOX_MESSAGES \
                    or await inbox_rows(dev.data) >= INBOX_MESSAGES

            await wait_until(inbox_full)
            broker.stop()  # what is published now stays in the outbox
            for i in range(OUTBOX_MESSAGES):
                r = await c.post("/v1.0/publish/mqtt/corrupt/out", json={"i": i, "pad": PAD})
                assert r.status_code == 204
        await dev.stop()
        clean = root / "clean"
        shutil.copytree(dev.data, clean)
        # A second run that is killed: every database's WAL keeps frames.
        broker.start()
        await dev.start()
        async with dev.client(timeout=10) as c:
            for i in range(20):
                await c.post("/v1.0/publish/mqtt/corrupt/in", json={"i": 1000 + i, "pad": PAD})
                await c.post("/v1.0/state/statestore",
                             json=[{"key": f"w{i}", "value": {"pad": PAD}}])
            await asyncio.sleep(1)
        await dev.kill()
        crashed = root / "crashed"
        shutil.copytree(dev.data, crashed)
        return clean, crashed
    finally:
        await dev.stop()
        broker.stop()


async def inbox_rows(data: Path) -> int:
    try:
        conn = sqlite3.connect(f"file:{data / 'inbox.db'}?mode=ro", uri=True)
        try:
            return int(conn.execute("SELECT COUNT(*) FROM messages").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.Error:
        return 0


@pytest.fixture(scope="module")
def templates(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Made once per module (its own event loop: a module-scoped async fixture would need a
    module-scoped loop)."""
    require_mosquitto()
    return asyncio.run(populate(tmp_path_factory.mktemp("corruption-templates")))


def page_size(path: Path) -> int:
    raw = path.read_bytes()[16:18]
    size = int.from_bytes(raw, "big")
    return 65536 if size == 1 else size


def damage(path: Path, how: str, rng: random.Random) -> str:
    """Damage ``path`` (a database or its ``-wal``) in place; a description."""
    data = bytearray(path.read_bytes())
    if how == "truncate":
        cut = len(data) * 2 // 5 + 123  # mid-page
        path.write_bytes(bytes(data[:cut]))
        return f"truncated {len(data)} -> {cut} bytes"
    if how == "header":
        data[0:100] = rng.randbytes(100)
        path.write_bytes(bytes(data))
        return "first 100 bytes garbled"
    if how == "middle":
        ps = page_size(path)
        pages = len(data) // ps
        assert pages >= 6, f"{path} has only {pages} pages: the template is too small"
        page = pages // 2
        data[page * ps: (page + 1) * ps] = rng.randbytes(ps)
        path.write_bytes(bytes(data))
        return f"page {page + 1} of {pages} overwritten with random bytes"
    if how == "wal":
        assert len(data) > 32 + 2 * (24 + 4096), f"{path} holds no frames"
        at = len(data) // 2
        data[at: at + 4096] = rng.randbytes(4096)
        path.write_bytes(bytes(data))
        return f"4 KiB of random bytes at offset {at} of {len(data)}"
    raise ValueError(how)


def prepare(template: Path, data: Path, db: str, how: str) -> tuple[set[str], str]:
    """Copy the template to ``data`` and damage ``db``; its companions, what was done."""
    shutil.copytree(template, data)
    had = {s for s in ("-wal", "-shm") if Path(f"{data / db}{s}").exists()}
    target = data / (db + "-wal" if how == "wal" else db)
    return had, damage(target, how, random.Random(f"{db}-{how}"))


CASES = [(db, how) for db in DATABASES for how in ("truncate", "header", "middle")] + [
    (db, "wal") for db in ("outbox.db", "inbox.db", "state.db")
]
# `make test` runs the hard case (garbage in the middle) for every database and one damaged
# WAL; `make faults` runs every case. Each case starts a broker and a sidecar (~4 s).
SHORT = {(db, "middle") for db in DATABASES} | {("outbox.db", "wal")}


@pytest.mark.parametrize(("db", "how"), [
    pytest.param(db, how, id=f"{db}-{how}",
                 marks=() if (db, how) in SHORT else (pytest.mark.faults_long,))
    for db, how in CASES
])
async def test_corrupt_database_at_start(
    templates: tuple[Path, Path], tmp_path: Path, db: str, how: str
) -> None:
    clean, crashed = templates
    broker = Mosquitto(tmp_path / "broker")
    broker.start()
    dev = SidecarProcess(tmp_path, "dev", resources(broker.url, free_port()), free_port(),
                         log_level="warn")
    had, what = prepare(crashed if how == "wal" else clean, dev.data, db, how)
    try:
        await dev.start()  # never a refusal to start
        qdir = dev.data / "quarantine"
        moved = sorted(p.name for p in qdir.iterdir()) if qdir.exists() else []
        log = dev.log.read_text()
        async with dev.client(timeout=10) as c:
            meta = (await c.get("/v1.0/metadata")).json()
            loss = meta["extended"].get("dataLoss", "")
            metric = await dev.metric("edge_runtime_db_quarantined_total",
                                      f'db="{DATABASES[db]}"')
            status = json.loads((dev.data / "cloudsync.json").read_text()) \
                if (dev.data / "cloudsync.json").exists() else {}
            # The fresh file works, and so do the others.
            r1 = await c.post("/v1.0/publish/mqtt/corrupt/out", json={"after": 1})
            r2 = await c.post("/v1.0/state/statestore", json=[{"key": "after", "value": 1}])
            kept = 0
            for j in range(STATE_KEYS):
                kept += (await c.get(f"/v1.0/state/statestore/k{j}")).status_code == 200
        print(f"[corruption] {db} {how}: {what}; quarantined={moved}; dataLoss={loss!r};"
              f" metric={metric}; state keys kept={kept}/{STATE_KEYS}")
        base = [n for n in moved if n.startswith(db + ".") and not n.endswith(("-wal", "-shm"))]
        assert len(base) == 1, f"{db} not quarantined: {moved}\n{log[-3000:]}"
        for suffix in had:
            assert base[0] + suffix in moved, f"{db}{suffix} not moved with it: {moved}"
        assert f"{db}" in log
        assert "is corrupt" in log
        assert metric == 1
        assert base[0] in loss, loss
        assert any(base[0] in note for note in status.get("data_loss", [])), status
        assert r1.status_code == 204
        assert r2.status_code == 204
        # A damaged -wal is copied, and the file opened with what precedes the damage.
        assert kept == (0 if db == "state.db" and how != "wal" else STATE_KEYS)
        if how == "wal":
            assert (dev.data / db).exists()
        assert os.listdir(dev.data)  # nothing else removed
    finally:
        await dev.stop()
        broker.stop()


def test_wal_check_tells_damage_from_stale_frames(tmp_path: Path) -> None:
    """Intact WALs (with frames of an older generation after a reset) are not damage; a
    garbled frame followed by frames of the same generation is; so is a garbled header."""
    from edge_runtime.support.walcheck import wal_damage

    db = tmp_path / "w.db"
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA wal_autocheckpoint = 0")
    conn.execute("CREATE TABLE t(x)")
    for i in range(40):
        conn.execute("INSERT INTO t VALUES (?)", (PAD * 3 + str(i),))
    wal = Path(f"{db}-wal")
    assert wal_damage(wal) is None
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    for i in range(40):
        conn.execute("INSERT INTO t VALUES (?)", (PAD * 3 + str(i),))
    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
    conn.execute("INSERT INTO t VALUES ('after the reset')")  # new salts, old frames follow
    snapshot = wal.read_bytes()
    conn.close()
    assert wal_damage(wal.with_name("absent-wal")) is None
    copy = tmp_path / "copy-wal"
    copy.write_bytes(snapshot)
    assert wal_damage(copy) is None, "stale frames of an older generation are not damage"
    garbled = bytearray(snapshot)
    garbled[32 + 24 + 100: 32 + 24 + 200] = bytes(100)  # inside the first frame's page
    copy.write_bytes(bytes(garbled))
    assert wal_damage(copy) is None, "no later frame of this generation: a torn tail"
    conn = sqlite3.connect(tmp_path / "v.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE TABLE t(x)")
    for i in range(10):
        conn.execute("INSERT INTO t VALUES (?)", (PAD + str(i),))
    big = bytearray(Path(f"{tmp_path / 'v.db'}-wal").read_bytes())
    conn.close()
    damaged = bytearray(big)
    damaged[32 + 24 + 10] ^= 0xFF  # the first frame: every later one is cut off
    copy.write_bytes(bytes(damaged))
    assert "frame 1 " in (wal_damage(copy) or "")
    header = bytearray(big)
    header[0:4] = b"\0\0\0\0"
    copy.write_bytes(bytes(header))
    assert "header" in (wal_damage(copy) or "")


def test_damaged_wal_that_cannot_be_copied_is_still_reported(tmp_path: Path) -> None:
    """No room for the copy (here: the quarantine folder cannot be made): the loss is still
    reported and the database still opens, with the commits before the damage."""
    from edge_runtime.support.sqlitefile import FileOptions, open_file

    db = tmp_path / "x.db"
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA wal_autocheckpoint = 0")
    conn.execute("CREATE TABLE t(x)")
    for i in range(10):
        conn.execute("INSERT INTO t VALUES (?)", (PAD + str(i),))
    wal = bytearray(Path(f"{db}-wal").read_bytes())
    conn.close()  # checkpoints and removes the WAL: put the damaged copy back
    frame = 24 + 4096
    wal[32 + 5 * frame + 100] ^= 0xFF  # frame 6 of the table's inserts
    Path(f"{db}-wal").write_bytes(bytes(wal))
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    opened = open_file(FileOptions(db, "x", quarantine_dir=blocker / "q"))
    try:
        assert len(opened.quarantined) == 1
        assert "damaged -wal, not copied" in opened.quarantined[0]
        assert opened.writer.execute("PRAGMA quick_check").fetchone() == ("ok",)
    finally:
        opened.writer.close()
        opened.reader.close()
