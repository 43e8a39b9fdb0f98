"""The kernel backend: libgpiod v2 through the ``gpiod`` package (the only module importing it).

A chip is named by path (``/dev/gpiochip0``), by device name (``gpiochip0``) or by label
(``pinctrl-rp1`` on a Pi 5, ``gpio-sim.0-node0`` for gpio-sim); lines by offset or by the
chip's line name (``GPIO17`` on a Pi). Edge events use ``CLOCK_MONOTONIC``; debounce,
``active_low`` and bias are the kernel's (it debounces in software where the chip cannot).
Every gpiod or OS exception is turned into a :class:`~edge_runtime.bindings.gpio.backend.GpioError`
here, with what to do about it (a missing chip, a user outside the ``gpio`` group, a line in
use and by whom).
"""

from __future__ import annotations

import errno
import getpass
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import gpiod
from gpiod.line import Bias, Clock, Direction, Value
from gpiod.line import Edge as GEdge

from edge_runtime.bindings.gpio.backend import (
    MAX_EVENT_BUFFER,
    ChipNotFoundError,
    ChipPermissionError,
    Edge,
    EdgeEvent,
    GpioError,
    Line,
    LineConfig,
    LineError,
)

__all__ = ["KernelChip", "KernelRequest", "open_chip"]

_DEVICE_NAME = re.compile(r"gpiochip\d+")
DEV = Path("/dev")


_EDGES = {"none": GEdge.NONE, "rising": GEdge.RISING, "falling": GEdge.FALLING,
          "both": GEdge.BOTH}
_BIASES = {"as-is": Bias.AS_IS, "disabled": Bias.DISABLED, "pull-up": Bias.PULL_UP,
           "pull-down": Bias.PULL_DOWN}
_RISING = gpiod.EdgeEvent.Type.RISING_EDGE


def _permission_hint(path: Path) -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "the sidecar's user"
    return (f"permission denied opening {path}: {user} may not use GPIO. Add it to the gpio"
            f" group (sudo usermod -aG gpio {user}, then log in again; under systemd:"
            " SupplementaryGroups=gpio) or give it access to the device another way")


def _chip_paths() -> list[Path]:
    return sorted(DEV.glob("gpiochip*"), key=lambda p: (len(p.name), p.name))


def open_chip(spec: str) -> KernelChip:
    """Open the chip ``spec`` names; raises :class:`ChipNotFoundError`,
    :class:`ChipPermissionError` or :class:`GpioError`."""
    spec = spec.strip()
    if spec.startswith("/"):
        return KernelChip(_open(Path(spec)))
    if _DEVICE_NAME.fullmatch(spec):
        return KernelChip(_open(DEV / spec))
    denied: list[Path] = []
    for path in _chip_paths():
        try:
            chip = gpiod.Chip(str(path))
        except PermissionError:
            denied.append(path)
            continue
        except OSError:
            continue
        with _translated(f"GPIO chip {path}"):
            label = chip.get_info().label
        if label == spec:
            return KernelChip(chip)
        chip.close()
    if denied:
        raise ChipPermissionError(f"no GPIO chip labelled {spec!r} among the ones this user"
                                  f" may open; {_permission_hint(denied[0])}")
    raise ChipNotFoundError(f"no GPIO chip labelled {spec!r}; {_available()}")


def _available() -> str:
    paths = _chip_paths()
    if not paths:
        return "this machine has no GPIO chips (no /dev/gpiochip*)"
    return "chips here: " + ", ".join(str(p) for p in paths)


def _open(path: Path) -> gpiod.Chip:
    try:
        return gpiod.Chip(str(path))
    except FileNotFoundError:
        raise ChipNotFoundError(f"no GPIO chip {path}; {_available()}") from None
    except PermissionError:
        raise ChipPermissionError(_permission_hint(path)) from None
    except OSError as exc:
        if exc.errno == errno.ENOTTY:
            raise GpioError(f"{path} is not a GPIO chip") from None
        raise GpioError(f"cannot open the GPIO chip {path}: {exc.strerror or exc}") from None


@contextmanager
def _translated(what: str) -> Iterator[None]:
    try:
        yield
    except (gpiod.ChipClosedError, gpiod.RequestReleasedError) as exc:
        raise GpioError(f"{what}: {exc}") from None
    except OSError as exc:
        raise GpioError(f"{what}: {exc.strerror or exc}") from None


def _settings(config: LineConfig, edge: Edge) -> gpiod.LineSettings:
    if config.output:
        return gpiod.LineSettings(
            direction=Direction.OUTPUT, active_low=config.active_low,
            output_value=Value.ACTIVE if config.initial_value else Value.INACTIVE,
        )
    return gpiod.LineSettings(
        direction=Direction.INPUT, edge_detection=_EDGES[edge], bias=_BIASES[config.bias],
        active_low=config.active_low, debounce_period=timedelta(microseconds=config.debounce_us),
        event_clock=Clock.MONOTONIC,
    )


class KernelChip:
    """An open ``/dev/gpiochipN`` (see :class:`backend.Chip`)."""

    def __init__(self, chip: gpiod.Chip) -> None:
        self._chip = chip
        with _translated(f"GPIO chip {chip.path}"):
            info = chip.get_info()
        self.description = f"GPIO chip {chip.path} ({info.label}, {info.num_lines} lines)"
        self._requests: list[KernelRequest] = []

    def _offset(self, line: int | str) -> int:
        try:
            return self._chip.line_offset_from_id(line)
        except (ValueError, OSError):
            raise LineError(f"{self.description} has no line {line!r}") from None

    def request(
        self, lines: Sequence[int | str], config: LineConfig, consumer: str
    ) -> KernelRequest:
        """Request ``lines``; raises :class:`LineError` (unknown, in use) or
        :class:`GpioError`."""
        offsets = [self._offset(line) for line in lines]
        if len(set(offsets)) != len(offsets):
            raise LineError(f"a line is named twice in {list(lines)}")
        try:
            req = self._chip.request_lines(
                {tuple(offsets): _settings(config, config.edge)}, consumer=consumer,
                event_buffer_size=MAX_EVENT_BUFFER if not config.output else None,
            )
        except OSError as exc:
            if exc.errno == errno.EBUSY:
                raise LineError(self._busy(offsets)) from None
            raise GpioError(f"{self.description} refused lines {offsets}"
                            f" ({exc.strerror or exc}): is that bias or debounce supported?"
                            ) from None
        with _translated(self.description):
            named = tuple(Line(o, self._chip.get_line_info(o).name or "") for o in offsets)
        request = KernelRequest(req, named, config)
        self._requests.append(request)
        return request

    def _busy(self, offsets: Sequence[int]) -> str:
        users = []
        for offset in offsets:
            info = self._chip.get_line_info(offset)
            if info.used:
                users.append(f"line {offset} ({info.name or 'unnamed'}) by"
                             f" {info.consumer or 'an unnamed consumer'!r}")
        return f"{self.description}: in use: {', '.join(users) or 'some line'}"

    async def close(self) -> None:
        """Release the requests and close the chip; idempotent."""
        for request in self._requests:
            request.release()
        self._requests.clear()
        self._chip.close()


class KernelRequest:
    """A ``gpiod.LineRequest`` (see :class:`backend.LineRequest`)."""

    def __init__(self, req: gpiod.LineRequest, lines: tuple[Line, ...], config: LineConfig
                 ) -> None:
        self._req = req
        self.lines = lines
        self.config = config
        self._fd = req.fd

    def fileno(self) -> int:
        """The request's descriptor (readable while edge events wait)."""
        return self._fd

    def has_events(self) -> bool:
        """Whether events wait (a zero-timeout poll)."""
        with _translated("cannot poll the GPIO lines"):
            return self._req.wait_edge_events(0)

    def read_events(self) -> list[EdgeEvent]:
        """The waiting events (call only when readable)."""
        with _translated("cannot read GPIO edge events"):
            return [EdgeEvent(e.line_offset, e.event_type == _RISING, e.timestamp_ns,
                              e.global_seqno) for e in self._req.read_edge_events()]

    def get(self, offset: int) -> int:
        """A requested line's logical value."""
        with _translated(f"cannot read line {offset}"):
            return 1 if self._req.get_value(offset) == Value.ACTIVE else 0

    def set(self, offset: int, value: int) -> None:
        """Drive a requested output line."""
        with _translated(f"cannot set line {offset}"):
            self._req.set_value(offset, Value.ACTIVE if value else Value.INACTIVE)

    def watch(self, edge: Edge) -> None:
        """Reconfigure the lines' edge detection (the rest of the settings unchanged)."""
        offsets = tuple(line.offset for line in self.lines)
        with _translated("cannot reconfigure the GPIO lines"):
            self._req.reconfigure_lines({offsets: _settings(self.config, edge)})

    def release(self) -> None:
        """Give the lines back; idempotent."""
        self._req.release()
