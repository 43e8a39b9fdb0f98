"""Start a systemd unit's ExecStart the way systemd would, where systemd is not running (the
arm64 chroot): the unit's Environment= and EnvironmentFile=, its User=, Group= and
SupplementaryGroups=, StateDirectory= (created, $STATE_DIRECTORY), WorkingDirectory=,
a NOTIFY_SOCKET and WATCHDOG_USEC from WatchdogSec=. Checks READY=1, the API's health and app
id, a WATCHDOG=1 ping, then SIGTERM, STOPPING=1 and exit code 0.

    python3 run_unit.py /etc/systemd/system/edge-runtime.service
    python3 run_unit.py /etc/systemd/system/edge-runtime@.service INSTANCE

Standard library only: it runs on the distribution's python3.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

TIMEOUT = 300  # emulated aarch64 starts slowly


def parse(path: Path, instance: str) -> list[tuple[str, str]]:
    entries: list[tuple[str, str]] = []
    logical = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not logical and (not line or line.startswith(("#", ";", "["))):
            continue
        if line.endswith("\\"):
            logical += line[:-1] + " "
            continue
        key, _, value = (logical + line).partition("=")
        entries.append((key.strip(), value.strip().replace("%i", instance)))
        logical = ""
    return entries


def env_file(path: str, env: dict[str, str]) -> None:
    optional = path.startswith("-")
    file = Path(path.lstrip("-"))
    if not file.exists():
        if optional:
            return
        sys.exit(f"run_unit: EnvironmentFile {file} is missing")
    for line in file.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            env[key.strip()] = value.strip().strip('"')


def expand(command: str, env: dict[str, str]) -> list[str]:
    argv: list[str] = []
    for word in shlex.split(command):
        if word.startswith("${") and word.endswith("}"):
            argv.append(env.get(word[2:-1], ""))
        elif word.startswith("$"):
            argv.extend(env.get(word[1:], "").split())
        else:
            argv.append(word)
    return argv


def wait_for(sock: socket.socket, line: str, deadline: float) -> None:
    while time.monotonic() < deadline:
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            msg = sock.recv(4096).decode()
        except TimeoutError:
            break
        if line in msg.split("\n"):
            return
    sys.exit(f"run_unit: no {line} from the service")


def main() -> int:
    unit = Path(sys.argv[1])
    instance = sys.argv[2] if len(sys.argv) > 2 else ""
    entries = parse(unit, instance)
    get = dict(entries)
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
    for key, value in entries:
        if key == "Environment":
            for assignment in shlex.split(value):
                k, _, v = assignment.partition("=")
                env[k] = v
        elif key == "EnvironmentFile":
            env_file(value, env)
    state = Path("/var/lib") / get["StateDirectory"]
    user = pwd.getpwnam(get["User"])
    state.mkdir(parents=True, exist_ok=True)
    os.chown(state, user.pw_uid, grp.getgrnam(get["Group"]).gr_gid)
    notify_path = Path("/run/edge-runtime-notify.sock")
    notify_path.unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(notify_path))
    os.chmod(notify_path, 0o777)  # noqa: S103 - the service runs as its own user
    env.update(
        STATE_DIRECTORY=str(state),
        NOTIFY_SOCKET=str(notify_path),
        WATCHDOG_USEC=str(int(get["WatchdogSec"]) * 1_000_000),
        HOME=str(state),
    )
    argv = expand(get["ExecStart"], env)
    print("run_unit:", shlex.join(argv), flush=True)  # noqa: T201 - a test tool's report
    proc = subprocess.Popen(
        argv, env=env, cwd=get.get("WorkingDirectory", "/"), user=get["User"],
        group=get["Group"], extra_groups=get["SupplementaryGroups"].split(),
    )
    deadline = time.monotonic() + TIMEOUT
    try:
        wait_for(sock, "READY=1", deadline)
        ports = json.loads((state / "runtime.json").read_text())["ports"]
        base = f"http://127.0.0.1:{ports['http']}"
        with urllib.request.urlopen(f"{base}/v1.0/healthz/outbound", timeout=60) as r:  # noqa: S310
            assert r.status == 204, r.status
        with urllib.request.urlopen(f"{base}/v1.0/metadata", timeout=60) as r:  # noqa: S310
            meta = json.load(r)
        expected = instance or env.get("APP_ID", "")
        assert meta["id"] == expected, (meta["id"], expected)
        wait_for(sock, "WATCHDOG=1", deadline)
        status = Path(f"/proc/{proc.pid}/status").read_text()
        owner = re.findall(r"^Uid:\s+(\d+)", status, re.MULTILINE)
        assert owner == [str(user.pw_uid)], owner
        proc.send_signal(signal.SIGTERM)
        wait_for(sock, "STOPPING=1", time.monotonic() + TIMEOUT)
        code = proc.wait(TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
        sock.close()
        notify_path.unlink(missing_ok=True)
    assert code == 0, code
    print(  # noqa: T201 - a test tool's report
        f"run_unit: {unit.name} {instance}: READY, healthy as {expected!r}, WATCHDOG, "
        "STOPPING, exit 0", flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
