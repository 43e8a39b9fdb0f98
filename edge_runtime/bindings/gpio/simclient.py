"""A client for the simulated chip's socket (``chip: sim``), for tests, benchmarks and demos.

::

    async with SimClient(data_dir / "gpio-sim.sock") as sim:
        await sim.drive(17, 1)              # a rising edge on line 17
        await sim.drive("GPIO17", 0, 1, 0)  # a bounce: three changes at once
        (await sim.read(18))["value"]       # what the binding drives on output line 18

From a shell: ``python -m edge_runtime.bindings.gpio.simclient SOCKET drive 17 1`` or
``... SOCKET read 18`` or ``... SOCKET lines``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from types import TracebackType
from typing import Any

__all__ = ["SimClient", "SimCommandError"]


class SimCommandError(Exception):
    """The simulated chip refused a command (the message is its answer)."""


class SimClient:
    """One connection to a simulated chip's socket; commands are answered in order."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def __aenter__(self) -> SimClient:
        self._reader, self._writer = await asyncio.open_unix_connection(self.path)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._writer is not None:
            self._writer.close()
            await self._writer.wait_closed()

    async def command(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Send one command and return its answer; raises :class:`SimCommandError`."""
        [answer] = await self.pipeline([cmd])
        return answer

    async def pipeline(self, cmds: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Send several commands in one write, then read their answers (in order)."""
        assert self._reader is not None, "use async with"
        assert self._writer is not None
        self._writer.write(b"".join(json.dumps(c).encode() + b"\n" for c in cmds))
        await self._writer.drain()
        answers = []
        for _ in cmds:
            line = await self._reader.readline()
            if not line:
                raise SimCommandError("the simulated chip closed the connection")
            answer: dict[str, Any] = json.loads(line)
            if not answer.get("ok"):
                raise SimCommandError(str(answer.get("error")))
            answers.append(answer)
        return answers

    async def drive(self, line: int | str, *levels: int) -> list[dict[str, Any]]:
        """Drive ``line`` to each level in turn; the events produced at once."""
        answer = await self.command({"line": line, "values": list(levels)})
        events: list[dict[str, Any]] = answer["events"]
        return events

    async def read(self, line: int | str) -> dict[str, Any]:
        """A line's physical ``value``, ``direction``, ``name`` and ``consumer``."""
        return await self.command({"op": "read", "line": line})

    async def lines(self) -> list[dict[str, Any]]:
        """Every line, as :meth:`read` describes it."""
        answer = await self.command({"op": "lines"})
        lines: list[dict[str, Any]] = answer["lines"]
        return lines


def _line(text: str) -> int | str:
    return int(text) if text.isdigit() else text


async def _main(args: argparse.Namespace) -> None:
    async with SimClient(args.socket) as sim:
        if args.command == "drive":
            result: Any = await sim.drive(_line(args.line), *args.levels)
        elif args.command == "read":
            result = await sim.read(_line(args.line))
        else:
            result = await sim.lines()
    sys.stdout.write(json.dumps(result) + "\n")


def main(argv: list[str] | None = None) -> int:
    """The command line (see the module docs); 1 when the chip refuses the command."""
    parser = argparse.ArgumentParser(prog="python -m edge_runtime.bindings.gpio.simclient",
                                     description="Drive or read a simulated GPIO chip.")
    parser.add_argument("socket", help="the chip's socket, e.g. .edge-runtime/gpio-sim.sock")
    sub = parser.add_subparsers(dest="command", required=True)
    drive = sub.add_parser("drive", help="drive an input line from outside")
    drive.add_argument("line")
    drive.add_argument("levels", nargs="+", type=int, choices=(0, 1))
    read = sub.add_parser("read", help="read a line (an output's driven level)")
    read.add_argument("line")
    sub.add_parser("lines", help="list every line")
    args = parser.parse_args(argv)
    try:
        asyncio.run(_main(args))
    except (SimCommandError, OSError) as exc:
        sys.stderr.write(f"{exc}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
