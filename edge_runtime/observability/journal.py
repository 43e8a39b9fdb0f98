"""journald's native protocol: every log record as one entry with structured fields.

Wire format (what ``sd_journal_send`` writes; written here, it is small): one ``AF_UNIX``
datagram per entry to journald's socket, holding ``KEY=value\\n`` per field, or, for a value
with a newline in it, ``KEY\\n`` + its length as a little-endian 64-bit integer + the value +
``\\n``. Keys are upper-case letters, digits and ``_``.

Fields sent (see :meth:`JournalHandler.fields`): ``MESSAGE`` (the formatted line, a traceback
included), ``PRIORITY`` (syslog's 2 critical ... 7 debug), ``SYSLOG_IDENTIFIER``
(``edge-runtime``), ``CODE_FILE``, ``CODE_LINE``, ``CODE_FUNC``, ``LOGGER`` (the logger name,
the ``scope`` of the JSON shape), ``EDGE_APP_ID`` (when there is one), ``TRACE_ID`` and
``SPAN_ID`` (when the record was emitted under a trace context, see
:mod:`~edge_runtime.observability.tracing`), ``EXCEPTION_TEXT`` (the traceback alone).

Oversize entries: a datagram larger than the socket's send buffer fails with ``EMSGSIZE``. The
entry is then written to a sealed memfd and the descriptor passed with ``SCM_RIGHTS`` (journald
reads a sealed memfd from any sender), so a long traceback or message arrives whole; nothing is
truncated here (journald applies its own field and entry limits).

Failures: the socket is non-blocking, so a send never waits. When a send fails (journald's
queue full: ``EAGAIN``; journald gone: ``ENOENT``/``ECONNREFUSED``; a memfd refused), the record
is written to the fallback handler instead (stderr, which under systemd is the journal stream,
with its ``<priority>`` prefix), so no record is lost; the first failure other than ``EAGAIN``
after a success also writes one warning there saying so. Every record tries the socket again,
so entries are structured again as soon as journald is back.
"""

from __future__ import annotations

import array
import errno
import fcntl
import logging
import os
import socket
import stat
from collections.abc import Iterable

__all__ = [
    "DEFAULT_SOCKET",
    "IDENTIFIER",
    "SOCKET_ENV",
    "JournalHandler",
    "encode",
    "priority",
    "socket_path",
    "usable",
]

DEFAULT_SOCKET = "/run/systemd/journal/socket"
SOCKET_ENV = "EDGE_RUNTIME_JOURNAL_SOCKET"  # another socket path, for tests
IDENTIFIER = "edge-runtime"

# syslog(3) priorities, as sd-daemon(3) prefixes them.
_PRIORITIES = ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4), (logging.INFO, 6))
_SEALS = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SEAL
_TOO_BIG = frozenset({errno.EMSGSIZE, errno.ENOBUFS})


def priority(levelno: int) -> int:
    """The syslog priority of a logging level."""
    return next((prio for level, prio in _PRIORITIES if levelno >= level), 7)


def socket_path() -> str:
    """journald's socket: ``$EDGE_RUNTIME_JOURNAL_SOCKET``, else the standard path."""
    return os.environ.get(SOCKET_ENV) or DEFAULT_SOCKET


def usable(path: str) -> bool:
    """Whether ``path`` is a socket (journald is listening, or was)."""
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        return False


def encode(fields: Iterable[tuple[str, str]]) -> bytes:
    """One entry in the native protocol. Values are UTF-8 (unpaired surrogates replaced)."""
    out = bytearray()
    for key, value in fields:
        data = value.encode("utf-8", "replace")
        if b"\n" in data:
            out += key.encode("ascii") + b"\n" + len(data).to_bytes(8, "little") + data + b"\n"
        else:
            out += key.encode("ascii") + b"=" + data + b"\n"
    return bytes(out)


class JournalHandler(logging.Handler):
    """Sends each record to journald's socket at ``path``; ``fallback`` takes the records the
    socket refuses. ``formatter`` makes ``MESSAGE`` (the handler's own formatter is not used).

    Thread-safe (``logging.Handler``'s lock); never blocks on the socket. Raises ``OSError``
    when the datagram socket cannot be made (the caller keeps the fallback then).
    """

    def __init__(
        self, path: str, formatter: logging.Formatter, *, fallback: logging.Handler,
        app_id: str = "", identifier: str = IDENTIFIER,
    ) -> None:
        super().__init__()
        self.path = path
        self.message_formatter = formatter
        self.fallback = fallback
        self._static = [("SYSLOG_IDENTIFIER", identifier)]
        if app_id:
            self._static.append(("EDGE_APP_ID", app_id))
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self._sock.setblocking(False)
        self._failing = False

    def fields(self, record: logging.LogRecord) -> list[tuple[str, str]]:
        """The entry's fields for ``record`` (``MESSAGE`` first)."""
        out = [
            ("MESSAGE", self.message_formatter.format(record)),
            ("PRIORITY", str(priority(record.levelno))),
            *self._static,
            ("CODE_FILE", record.pathname),
            ("CODE_LINE", str(record.lineno)),
            ("CODE_FUNC", record.funcName),
            ("LOGGER", record.name),
        ]
        trace_id = getattr(record, "trace_id", "")
        if trace_id:
            out += [("TRACE_ID", trace_id), ("SPAN_ID", getattr(record, "span_id", ""))]
        if record.exc_info:
            # The formatters cache it in exc_text when they make MESSAGE.
            text = record.exc_text or self.message_formatter.formatException(record.exc_info)
            out.append(("EXCEPTION_TEXT", text))
        return out

    def emit(self, record: logging.LogRecord) -> None:
        try:
            data = encode(self.fields(record))
        except Exception:  # noqa: BLE001 - logging's contract: report, never raise
            self.handleError(record)
            return
        failure = self._send(data)
        if failure is None:
            self._failing = False
            return
        if not self._failing and failure.errno != errno.EAGAIN:
            self._failing = True
            self.fallback.handle(logging.LogRecord(
                __name__, logging.WARNING, __file__, 0,
                "journald's socket %s refused a record (%s); writing to stderr until it takes"
                " them again", (self.path, failure), None,
            ))
        self.fallback.handle(record)

    def _send(self, data: bytes) -> OSError | None:
        """Send one entry; the error when it did not go."""
        try:
            self._sock.sendto(data, self.path)
        except OSError as exc:
            if exc.errno not in _TOO_BIG:
                return exc
        else:
            return None
        try:
            self._send_memfd(data)
        except OSError as exc:
            return exc
        return None

    def _send_memfd(self, data: bytes) -> None:
        fd = os.memfd_create("edge-runtime-journal", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            # Sealed, journald maps it as it is, whoever sent it.
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, _SEALS)
            # sendmsg, not socket.send_fds: that one drops its address argument.
            rights = array.array("i", [fd])
            self._sock.sendmsg([], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, rights)], 0, self.path)
        finally:
            os.close(fd)

    def close(self) -> None:
        self._sock.close()
        super().close()

