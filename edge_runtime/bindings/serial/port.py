"""One open serial port: pyserial configures it, the event loop reads its file descriptor.

The only module that imports pyserial. :func:`open_port` opens and configures the device
(baud rate, parity, data and stop bits, an exclusive lock so two processes cannot read the same
port) and blocks briefly: call it in an executor. The descriptor stays non-blocking, so
:meth:`SerialPort.read` and :meth:`SerialPort.write_some` never block the loop; the binding
registers :attr:`SerialPort.fd` with ``loop.add_reader``/``add_writer``.

Errors: :class:`PortError` for a port that cannot be opened, :class:`PortGoneError` when an
open port stops working (an unplugged USB adapter reads as end-of-file or ``EIO``; a pty whose
other side closed reads ``EIO``). pyserial's and the OS's exceptions never leave this module.
"""

from __future__ import annotations

import contextlib
import errno
import os

import serial

from edge_runtime.bindings.serial.metadata import SerialSettings

__all__ = ["PortError", "PortGoneError", "SerialPort", "open_port"]

_PARITY = {
    "none": serial.PARITY_NONE,
    "even": serial.PARITY_EVEN,
    "odd": serial.PARITY_ODD,
    "mark": serial.PARITY_MARK,
    "space": serial.PARITY_SPACE,
}
_READ_SIZE = 65536


class PortError(Exception):
    """The port cannot be opened or configured now (missing, busy, refused)."""


class PortGoneError(PortError):
    """An open port failed: the device went away or reports an I/O error."""


class SerialPort:
    """An open, configured port. Not thread-safe: use it on one event loop."""

    def __init__(self, device: serial.Serial, path: str) -> None:
        self._device = device
        self.path = path
        fd = device.fileno()
        assert isinstance(fd, int)
        self.fd: int = fd

    def read(self) -> bytes:
        """What is waiting (up to 64 KiB); ``b""`` when nothing is.

        Raises :class:`PortGoneError` at end-of-file or on an I/O error.
        """
        try:
            data = os.read(self.fd, _READ_SIZE)
        except BlockingIOError:
            return b""
        except InterruptedError:
            return b""
        except OSError as exc:
            raise PortGoneError(f"reading {self.path} failed: {_why(exc)}") from None
        if not data:
            raise PortGoneError(f"{self.path} reported end of file (the device went away)")
        return data

    def write_some(self, data: memoryview) -> int:
        """Write what the driver takes now; the count (0 when its buffer is full).

        Raises :class:`PortGoneError` on an I/O error.
        """
        try:
            return os.write(self.fd, data)
        except (BlockingIOError, InterruptedError):
            return 0
        except OSError as exc:
            raise PortGoneError(f"writing to {self.path} failed: {_why(exc)}") from None

    def close(self) -> None:
        """Close the device; errors (it may be gone already) are ignored. Idempotent."""
        with contextlib.suppress(OSError, serial.SerialException):
            self._device.close()


def open_port(settings: SerialSettings) -> SerialPort:
    """Open and configure ``settings.port`` (blocking: run it in an executor).

    Raises :class:`PortError` saying why (no such device, busy, not a serial port, a setting
    the device refuses).
    """
    device = serial.Serial()
    device.port = settings.port
    device.baudrate = settings.baud_rate
    device.parity = _PARITY[settings.parity]
    device.bytesize = settings.data_bits
    device.stopbits = settings.stop_bits
    device.timeout = 0
    device.write_timeout = 0
    device.exclusive = True  # another process reading the same port would steal frames
    try:
        device.open()
    except serial.SerialException as exc:
        raise PortError(_open_error(settings.port, exc)) from None
    except (OSError, ValueError) as exc:
        raise PortError(f"cannot open {settings.port}: {_why(exc)}") from None
    return SerialPort(device, settings.port)


def _open_error(path: str, exc: serial.SerialException) -> str:
    code = exc.errno if isinstance(exc.errno, int) else None
    if code is None and exc.args and isinstance(exc.args[0], int):
        code = exc.args[0]
    if code == errno.ENOENT:
        return f"{path} does not exist (not plugged in?)"
    if code in (errno.EWOULDBLOCK, errno.EAGAIN):
        return f"{path} is in use by another process (it holds the exclusive lock)"
    if code is not None:
        return f"cannot open {path}: {os.strerror(code)}"
    return f"cannot open {path}: {exc}"


def _why(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc)
