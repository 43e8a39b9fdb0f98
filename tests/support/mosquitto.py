"""A private mosquitto broker for tests: own config, own port on 127.0.0.1, own folder.

::

    broker = Mosquitto(tmp_path)       # picks a free port; nothing runs yet
    broker.start()                      # returns once the port accepts connections
    broker.url                          # "tcp://127.0.0.1:PORT"
    broker.stop(); broker.start()       # SIGTERM saves the persistent sessions; same port
    broker.kill()                       # SIGKILL: nothing saved since the last autosave
    broker.pause(); broker.resume()     # SIGSTOP/SIGCONT: the socket stays open, no acks

    tls = BrokerTLS(cafile=ca, certfile=cert, keyfile=key, require_certificate=True)
    broker = Mosquitto(tmp_path, tls=tls)  # the one listener speaks TLS; url is ssl://...

Every wait is bounded. :func:`require_mosquitto` skips the test when mosquitto is missing;
the pytest fixtures live in the test packages (``tests/pubsub/conftest.py``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import pytest

__all__ = [
    "BrokerTLS", "Mosquitto", "free_port", "make_password_file", "mosquitto_path",
    "require_mosquitto",
]

_CANDIDATES = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto", "/usr/bin/mosquitto")


def mosquitto_path() -> str | None:
    """The mosquitto executable, or ``None`` when it is not installed."""
    found = shutil.which("mosquitto")
    if found:
        return found
    return next((c for c in _CANDIDATES if os.access(c, os.X_OK)), None)


def require_mosquitto() -> str:
    """The mosquitto executable; skips the calling test when it is not installed."""
    path = mosquitto_path()
    if path is None:
        pytest.skip("mosquitto is not installed")
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def make_password_file(path: Path, user: str, password: str) -> Path:
    """A mosquitto password file holding one user; skips the test without mosquitto_passwd."""
    tool = shutil.which("mosquitto_passwd")
    if tool is None:
        pytest.skip("mosquitto_passwd is not installed")
    subprocess.run(
        [tool, "-b", "-c", str(path), user, password], check=True, capture_output=True, timeout=10
    )
    path.chmod(0o600)
    return path


@dataclass(frozen=True)
class BrokerTLS:
    """TLS for the broker's listener (mosquitto's options of the same names).

    ``cafile`` verifies client certificates; ``require_certificate`` refuses clients without
    one; ``use_identity_as_username`` makes the certificate's CN the user name.
    """

    cafile: Path
    certfile: Path
    keyfile: Path
    require_certificate: bool = False
    use_identity_as_username: bool = False

    def config_lines(self) -> list[str]:
        """The lines that follow the ``listener`` line."""
        return [
            f"cafile {self.cafile}",
            f"certfile {self.certfile}",
            f"keyfile {self.keyfile}",
            f"require_certificate {'true' if self.require_certificate else 'false'}",
            f"use_identity_as_username {'true' if self.use_identity_as_username else 'false'}",
        ]


class Mosquitto:
    """One mosquitto process with a generated config under ``workdir``.

    ``anonymous=False`` with a ``password_file`` (see :func:`make_password_file`) makes a
    broker that checks credentials; ``extra_config`` lines are appended to the generated
    config. The port is fixed at construction, so restarts keep it. With ``tls`` the listener
    speaks TLS only (the files are read again at every start, so a test can rotate them).
    """

    def __init__(
        self,
        workdir: Path,
        *,
        port: int | None = None,
        anonymous: bool = True,
        password_file: Path | None = None,
        extra_config: str = "",
        tls: BrokerTLS | None = None,
    ) -> None:
        self.executable = require_mosquitto()
        self.workdir = workdir
        self.port = port or free_port()
        self.data_dir = workdir / "data"
        self.log_path = workdir / "mosquitto.log"
        self.config_path = workdir / "mosquitto.conf"
        self._anonymous = anonymous
        self._password_file = password_file
        self._extra = extra_config
        self.tls = tls
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``tcp://127.0.0.1:PORT`` (``ssl://...`` with ``tls``)."""
        return f"{'ssl' if self.tls else 'tcp'}://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        """Whether the process is alive (paused counts as alive)."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """The process id while running."""
        return self._proc.pid if self.running and self._proc is not None else None

    def _write_config(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        lines = [
            f"listener {self.port} 127.0.0.1",
            *(self.tls.config_lines() if self.tls else []),
            f"allow_anonymous {'true' if self._anonymous else 'false'}",
            "persistence true",
            f"persistence_location {self.data_dir}/",
            "autosave_interval 1",
            f"log_dest file {self.log_path}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
            "log_timestamp_format %H:%M:%S",
        ]
        if self._password_file is not None:
            lines.append(f"password_file {self._password_file}")
        if os.geteuid() == 0:  # as root it drops to user mosquitto, which cannot write here
            lines.append("user root")
        if self._extra:
            lines.append(self._extra)
        self.config_path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    def start(self, timeout: float = 10.0) -> None:
        """Start (or restart, on the same port) and return once the port accepts connections.

        Raises ``RuntimeError`` with the log's tail when it exits or does not listen in time.
        """
        if self.running:
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._write_config()
        self._proc = subprocess.Popen(
            [self.executable, "-c", str(self.config_path)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode(errors="replace") if self._proc.stderr else ""
                self._proc = None
                raise RuntimeError(f"mosquitto exited at start: {err}\n{self.log_tail()}")
            with contextlib.suppress(OSError), socket.create_connection(
                ("127.0.0.1", self.port), timeout=0.2
            ):
                return
            time.sleep(0.02)
        self.kill()
        raise RuntimeError(
            f"mosquitto did not listen on {self.port} in {timeout}s\n{self.log_tail()}"
        )

    def _signal_and_wait(self, sig: signal.Signals, timeout: float) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
                if sig != signal.SIGKILL:
                    proc.send_signal(signal.SIGCONT)  # a paused broker must run to exit
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        if proc.stderr is not None:
            proc.stderr.close()
        self._proc = None

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM and wait: mosquitto saves its persistence file (sessions, queued messages)."""
        self._signal_and_wait(signal.SIGTERM, timeout)

    def kill(self, timeout: float = 10.0) -> None:
        """SIGKILL and wait: a crash; only what the last autosave wrote survives."""
        self._signal_and_wait(signal.SIGKILL, timeout)

    def restart(self, timeout: float = 10.0) -> None:
        """:meth:`stop` then :meth:`start` on the same port."""
        self.stop(timeout)
        self.start(timeout)

    def pause(self) -> None:
        """SIGSTOP: connections stay open but nothing is answered (no PUBACK, no CONNACK)."""
        if self._proc is not None and self.running:
            self._proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after :meth:`pause`."""
        if self._proc is not None and self.running:
            self._proc.send_signal(signal.SIGCONT)

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the broker's log (for failure messages)."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no mosquitto log)"
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> Mosquitto:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
