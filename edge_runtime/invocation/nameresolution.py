"""Name resolution from daprd's ``--config`` file: our ``static`` table, or ``mdns``.

The file holds one ``kind: Configuration`` resource. Only ``spec.nameResolution`` is read here;
other ``spec`` fields (tracing, metrics, features ...) are left to the code that understands
them. The shape::

    apiVersion: dapr.io/v1alpha1
    kind: Configuration
    metadata: {name: edge}
    spec:
      nameResolution:
        component: static            # or mdns (the mdns extra; edge_runtime.invocation.mdns)
        configuration:
          apps:                      # app id (or "appid.namespace") -> host:port of that
            sensors: "192.168.1.20:50002"      # sidecar's --internal-grpc-port
            gateway.plant: "[fd00::5]:50002"   # IPv6 in brackets

daprd's ``mdns`` takes no configuration; ours takes the same optional ``apps`` table, whose
entries win over what mDNS finds.

Every problem is a :class:`~edge_runtime.config.manifest.ConfigProblem` with ``file:line``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_runtime.config.loader import load_resources
from edge_runtime.config.manifest import ConfigProblem, RawResource
from edge_runtime.subscriptions.yamlmarks import Marks, PathPart

__all__ = ["NameResolution", "load_configuration", "parse_address"]

API_VERSION = "dapr.io/v1alpha1"
_NR_KEYS = ("component", "version", "configuration")
COMPONENTS = ("static", "mdns")
_APP_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*(\.[A-Za-z0-9][A-Za-z0-9_-]*)?")
_HOST = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?")


@dataclass(frozen=True, slots=True)
class NameResolution:
    """The static table: app id (or ``appid.namespace``) → ``host:port``. Empty: none.
    ``component`` is ``static`` or ``mdns`` (then apps not in the table are looked up over
    mDNS)."""

    apps: Mapping[str, str] = field(default_factory=dict)
    namespace: str = ""
    component: str = "static"

    @property
    def mdns(self) -> bool:
        """Whether apps missing from the table are looked up over mDNS."""
        return self.component == "mdns"

    def resolve(self, app_id: str, namespace: str = "") -> str | None:
        """The address of ``app_id`` in ``namespace`` (ours when empty), or ``None``."""
        if namespace and namespace != self.namespace:
            return self.apps.get(f"{app_id}.{namespace}")
        found = self.apps.get(app_id)
        if found is None and self.namespace:
            found = self.apps.get(f"{app_id}.{self.namespace}")
        return found


def parse_address(text: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` → (host, port); raises :class:`ValueError`."""
    host, sep, port = text.strip().rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("expected host:port with a port from 1 to 65535")
    if host.startswith("[") and host.endswith("]") and ":" in host:
        return host[1:-1], int(port)
    if ":" in host:
        raise ValueError("write an IPv6 address in brackets: [fd00::5]:50002")
    if not _HOST.fullmatch(host):
        raise ValueError(f"{host!r} is not a host name or address")
    return host, int(port)


class _Reader:
    def __init__(self, raw: RawResource, problems: list[ConfigProblem]) -> None:
        self.raw = raw
        self.marks = Marks()
        self.problems = problems

    def bad(self, path: tuple[PathPart, ...], message: str) -> None:
        label = f"configuration {self.raw.name!r}" if self.raw.name else "configuration"
        self.problems.append(ConfigProblem(
            self.marks.at(self.raw, *path), message, label, ".".join(str(p) for p in path)
        ))

    def read(self, namespace: str) -> NameResolution:
        spec = self.raw.body.get("spec")
        if spec is None:
            return NameResolution(namespace=namespace)
        if not isinstance(spec, Mapping):
            self.bad(("spec",), "expected a mapping")
            return NameResolution(namespace=namespace)
        nr = spec.get("nameResolution")
        if nr is None:
            return NameResolution(namespace=namespace)
        base: tuple[PathPart, ...] = ("spec", "nameResolution")
        if not isinstance(nr, Mapping):
            self.bad(base, "expected a mapping with component and configuration")
            return NameResolution(namespace=namespace)
        for key in nr:
            if key not in _NR_KEYS:
                expected = ", ".join(_NR_KEYS)
                self.bad((*base, str(key)), f"unknown field; expected one of: {expected}")
        component = nr.get("component")
        if component not in COMPONENTS:
            self.bad((*base, "component"), f"expected static or mdns, got {component!r}")
            return NameResolution(namespace=namespace)
        return NameResolution(self._apps(nr.get("configuration"), base), namespace, component)

    def _apps(self, conf: Any, base: tuple[PathPart, ...]) -> dict[str, str]:
        where = (*base, "configuration")
        if conf is None:
            return {}
        if not isinstance(conf, Mapping):
            self.bad(where, "expected a mapping with apps")
            return {}
        for key in conf:
            if key != "apps":
                self.bad((*where, str(key)), "unknown field; expected: apps")
        apps = conf.get("apps")
        if apps is None:
            return {}
        if not isinstance(apps, Mapping):
            self.bad((*where, "apps"), "expected a mapping of app id to host:port")
            return {}
        out: dict[str, str] = {}
        for app_id, address in apps.items():
            at = (*where, "apps", str(app_id))
            if not isinstance(app_id, str) or not _APP_ID.fullmatch(app_id):
                self.bad(at, f"{app_id!r} is not an app id (or appid.namespace)")
                continue
            if not isinstance(address, str):
                self.bad(at, f"expected \"host:port\" as a string, got {address!r}")
                continue
            try:
                parse_address(address)
            except ValueError as exc:
                self.bad(at, f"{exc}, got {address!r}")
                continue
            out[app_id] = address.strip()
        return out


def load_configuration(
    path: Path, *, namespace: str = ""
) -> tuple[NameResolution, list[ConfigProblem]]:
    """The name resolution in the ``Configuration`` file at ``path`` and the problems found
    (with problems, the valid entries are still returned)."""
    res = load_resources([path])
    problems = list(res.problems)
    configs = [r for r in res.others if r.kind == "Configuration"]
    if not configs:
        if not problems:
            problems.append(ConfigProblem(
                None, f"--config {path}: expected a resource of kind Configuration"
            ))
        return NameResolution(namespace=namespace), problems
    problems.extend(
        ConfigProblem(x.mark, f"only one Configuration is read; the first is at {configs[0].mark}")
        for x in configs[1:]
    )
    raw = configs[0]
    reader = _Reader(raw, problems)
    if raw.api_version != API_VERSION:
        reader.bad(("apiVersion",), f"expected {API_VERSION}, got {raw.api_version!r}")
    return reader.read(namespace), problems
