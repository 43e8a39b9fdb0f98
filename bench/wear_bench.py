"""Storage writes per message, and latency, against the group-commit window (SD-card wear).

Path: HTTP publish (``full`` durability: fsync before the 204) to a publisher sidecar → relay →
mosquitto → subscriber sidecar (inbox commit before the PUBACK) → HTTP to an app process.
Both sidecars run with the same ``--commit-window-ms``. At a fixed rate (default 1,000 msg/s,
~200-byte events) for a few seconds per window, it reads ``write_bytes`` less
``cancelled_write_bytes`` of ``/proc/PID/io`` of each sidecar before and after (pages the
process dirtied and the kernel must write out: what the flash receives, ext4's own journal
aside), and divides by the messages sent. The data dirs go under ``--dir`` (default
``/var/tmp``), which must be a real disk: tmpfs writes nothing.

Latency (p50/p99) is publish → app, one clock (CLOCK_MONOTONIC) for both ends. Baseline in the
same run: the first mode and window given (by default full, 0: no extra wait, the old
default).
Each window runs ``--repeat`` times; figures are min/median/max.

``--trees A,B`` runs the sidecars from other source trees too (each is the sidecars' working
directory and first on their ``PYTHONPATH``, e.g. an unpacked ``git archive`` of ``main``;
``python -m`` imports from the working directory first), interleaved with the
same windows, so a change is compared against its baseline in one invocation on a loaded
machine; the first tree is then the baseline of the ratio column.

``--broker-delay-ms D`` puts a TCP proxy between the publisher sidecar and the broker that
holds every chunk D ms in each direction (pipelined: the link's latency, not its rate), so a
PUBACK comes ~2D ms after its PUBLISH, as from a remote broker. The publisher's outbox then
writes what the broker has not acknowledged within the commit window (the fast lane's saving
needs the broker to answer within it).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import cast

from bench._pair import Pair, pct, publish_at, write_bytes
from tests.support.mosquitto import Mosquitto


class DelayProxy:
    """A TCP proxy on 127.0.0.1 holding each chunk ``delay_s`` before forwarding it, in its
    own thread and loop; chunks are forwarded in order, each ``delay_s`` after it was read."""

    def __init__(self, target_port: int, delay_s: float) -> None:
        self.target_port, self.delay_s = target_port, delay_s
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._tasks: set[asyncio.Future[None]] = set()

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def start(self) -> DelayProxy:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the delay proxy did not start")
        return self

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._shutdown)
        self._thread.join(10)

    def _shutdown(self) -> None:
        self._loop.stop()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(
            asyncio.start_server(self._accept, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        pending = asyncio.all_tasks(self._loop)
        for task in pending:
            task.cancel()
        self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        server.close()
        self._loop.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        for r, w in ((reader, up_w), (up_r, writer)):
            task = asyncio.ensure_future(self._pump(r, w))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def forward() -> None:
            while True:
                due, data = await queue.get()
                if not data:
                    break
                await asyncio.sleep(max(0.0, due - loop.time()))
                writer.write(data)
                await writer.drain()

        sender = asyncio.ensure_future(forward())
        try:
            while data := await reader.read(65536):
                queue.put_nowait((loop.time() + self.delay_s, data))
            queue.put_nowait((0.0, b""))
            with contextlib.suppress(OSError):
                await sender
        except OSError:
            pass
        finally:
            sender.cancel()
            writer.close()


def one_run(work: Path, broker: Mosquitto, window: float, rate: float, seconds: float,
            extra: list[str], verbose: bool = False,
            conns: int = 32, pub_url: str = "") -> tuple[float, float, float, float, int, int]:
    """(publisher bytes/msg, subscriber bytes/msg, p50 ms, p99 ms, arrived, sent)."""
    topic = f"wear/w{window:g}".replace(".", "_")
    pair = Pair(work, broker, topic, "--commit-window-ms", str(window), *extra)
    pair.pub_url = pub_url
    with pair:
        # Warm up (first pages of the tables, the WAL reaching its size), then measure.
        warm, _ = asyncio.run(publish_at(pair.pub_port, topic, rate, 1.0, conns=conns))
        before = settle(pair, warm)
        pub0, sub0 = write_bytes(pair.pub.pid), write_bytes(pair.sub.pid)
        oc0, ic0 = pair.commits("pub", "outbox"), pair.commits("sub", "inbox")
        sent, bad = asyncio.run(publish_at(pair.pub_port, topic, rate, seconds, conns=conns))
        if bad:
            print(f"    ({len(bad)} publishes answered {sorted(set(bad))})")
        target = cast(int, before["n"]) + sent
        deadline = time.monotonic() + max(120.0, seconds * 20)
        lat: list[float] = []
        n = 0
        while time.monotonic() < deadline:
            time.sleep(0.5)
            st = pair.stats()
            lat += cast(list[float], st["lat"])
            n = cast(int, st["n"])
            if n >= target:
                break
        # Let the subscriber's deletes and the publisher's acks commit before reading.
        time.sleep(1.0)
        pub1, sub1 = write_bytes(pair.pub.pid), write_bytes(pair.sub.pid)
        oc1, ic1 = pair.commits("pub", "outbox"), pair.commits("sub", "inbox")
        arrived = n - cast(int, before["n"])
        if verbose:
            print(f"    window {window:g}: inbox.db pages of {_page_size(pair, 'sub')} bytes,"
                  f" {os.getcwd()}")
            print(f"    window {window:g}: outbox {oc1[0] - oc0[0]:.0f} commits of "
                  f"{oc1[1] - oc0[1]:.0f} units, inbox {ic1[0] - ic0[0]:.0f} commits of "
                  f"{ic1[1] - ic0[1]:.0f} units, for {arrived} messages")
    # Per message sent (the publisher stored them all; the subscriber's share assumes they all
    # arrived: the arrived/sent column says when not).
    per = max(sent, 1)
    return ((pub1 - pub0) / per, (sub1 - sub0) / per, pct(lat, 0.5), pct(lat, 0.99),
            arrived, sent)


def _page_size(pair: Pair, side: str) -> int:
    """The page size of ``side``'s inbox.db, from its header (0 if unknown)."""
    try:
        with open(pair.data_dirs[side] / "inbox.db", "rb") as f:
            head = f.read(18)
    except OSError:
        return 0
    size = int.from_bytes(head[16:18], "big") if len(head) == 18 else 0
    return 65536 if size == 1 else size


def settle(pair: Pair, at_least: int) -> dict[str, object]:
    """Wait until the app has ``at_least`` events and no more arrive for a second."""
    last, deadline = -1, time.monotonic() + 120
    while time.monotonic() < deadline:
        st = pair.stats()
        n = cast(int, st["n"])
        if n >= at_least and n == last:
            return st
        last = n
        time.sleep(1.0)
    return pair.stats()


def mmm(values: list[float], fmt: str = "{:.0f}") -> str:
    """min/median/max."""
    return "/".join(fmt.format(v) for v in (min(values), statistics.median(values),
                                             max(values)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rate", type=float, default=1000.0)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--windows", default="0,2,20,100",
                    help="commit windows in ms, comma-separated; the first is the baseline")
    ap.add_argument("--dir", default="/var/tmp",  # noqa: S108 - a private mkdtemp inside
                    help="where the data dirs go: a real disk, not tmpfs (default /var/tmp)")
    ap.add_argument("--durability", default="full",
                    help="durability modes, comma-separated (each with every window)")
    ap.add_argument("--verbose", action="store_true", help="print commits per run")
    ap.add_argument("--extra", default="", help="more sidecar arguments, space-separated")
    ap.add_argument("--conns", type=int, default=32,
                    help="publishing connections: at most this many publishes wait at once, so"
                         " at most this many share a commit (32 caps a 100 ms window at"
                         " 320 msg/s; use rate x window or more to keep the rate)")
    ap.add_argument("--broker-delay-ms", type=float, default=0.0,
                    help="hold the publisher's traffic to and from the broker this long each"
                         " way (a remote broker)")
    ap.add_argument("--trees", default="",
                    help="source trees to run the sidecars from, comma-separated (default: "
                         "this one); each gets its own rows")
    args = ap.parse_args()
    trees = [t for t in args.trees.split(",") if t] or [""]
    windows = [(f"{d}{_tag(t, trees)}", float(w)) for t in trees
               for d in args.durability.split(",") for w in args.windows.split(",")]
    extra = args.extra.split()
    results: dict[tuple[str, float], list[tuple[float, float, float, float, int, int]]] = {}
    with tempfile.TemporaryDirectory(dir=args.dir, prefix=".wear-bench-") as tmp:
        work = Path(tmp)
        fs = os.statvfs(work)
        broker = Mosquitto(work / "broker", extra_config="max_queued_messages 0")
        broker.start()
        proxy = (DelayProxy(broker.port, args.broker_delay_ms / 1000).start()
                 if args.broker_delay_ms > 0 else None)
        try:
            for rep in range(args.repeat):
                for i, (d, w) in enumerate(windows):  # interleaved: others' load spreads
                    run_dir = work / f"r{rep}-{i}-w{w:g}"
                    run_dir.mkdir()
                    mode, _, tree = d.partition("@")
                    with _sidecar_tree(trees[int(tree)] if tree else ""):
                        results.setdefault((d, w), []).append(
                            one_run(run_dir, broker, w, args.rate, args.seconds,
                                    [*extra, "--durability", mode], args.verbose, args.conns,
                                    proxy.url if proxy is not None else ""))
        finally:
            if proxy is not None:
                proxy.stop()
            broker.stop()
    for i, tree in enumerate(trees):
        if len(trees) > 1:
            print(f"  @{i}: sidecars from {tree}")
    print(f"wear bench: {args.rate:.0f} msg/s x {args.seconds:g}s, ~200-byte events, "
          f"durability {args.durability}, {args.repeat} runs per window (min/median/max), "
          f"{os.cpu_count()} cores shared, fs block {fs.f_bsize}"
          + (f", publisher's broker {args.broker_delay_ms:g} ms away each way"
             if args.broker_delay_ms else ""))
    print("  mode/window ms | publisher B/msg  | subscriber B/msg | p50 ms          | p99 ms"
          "            | arrived/sent")
    base = statistics.median(r[0] + r[1] for r in results[windows[0]])
    for d, w in windows:
        rs = results[(d, w)]
        total = statistics.median(r[0] + r[1] for r in rs)
        print(f"  {d:>8} {w:7g} | {mmm([r[0] for r in rs]):16} | {mmm([r[1] for r in rs]):16} | "
              f"{mmm([r[2] for r in rs], '{:.1f}'):15} | {mmm([r[3] for r in rs], '{:.1f}'):17}"
              f" | {sum(r[4] for r in rs)}/{sum(r[5] for r in rs)}"
              f"   bytes ratio vs {windows[0][0]} {windows[0][1]:g}: {total / max(base, 1):.2f}")


def _tag(tree: str, trees: list[str]) -> str:
    return f"@{trees.index(tree)}" if len(trees) > 1 else ""


@contextlib.contextmanager
def _sidecar_tree(tree: str) -> Iterator[None]:
    """Sidecars started inside run from ``tree``: their working directory (``python -m``
    imports from it first) and first on ``PYTHONPATH`` ("": unchanged)."""
    old, cwd = os.environ.get("PYTHONPATH"), os.getcwd()
    if tree:
        os.environ["PYTHONPATH"] = os.pathsep.join([tree, *([old] if old else [])])
        os.chdir(tree)
    try:
        yield
    finally:
        os.chdir(cwd)
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old


if __name__ == "__main__":
    main()
