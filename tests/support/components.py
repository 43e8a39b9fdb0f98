"""Component YAML that many tests and benches start a sidecar with.

Each function or constant gives YAML documents ending in a newline (one, except
:func:`local_secrets`): join them with ``---\\n``.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["SQLITE_STATESTORE", "component", "local_secrets", "mqtt_pubsub"]

# A metadata value with one of these is written in double quotes (a URL's ':', a list's ',').
_NEEDS_QUOTES = frozenset(':,[]{}#&*!|>\'"%@`')


def _scalar(value: str) -> str:
    if not value or _NEEDS_QUOTES & set(value):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return value


def component(name: str, type_: str, *metadata: tuple[str, str]) -> str:
    """A ``Component`` document named ``name`` of type ``type_`` (``version: v1``) with one
    ``- {name: .., value: ..}`` line per ``metadata`` pair, in order; a value that YAML would
    misread unquoted (a URL, ``@every 1s``, ``"a, b"``) is written in double quotes."""
    lines = "".join(f"  - {{name: {key}, value: {_scalar(value)}}}\n" for key, value in metadata)
    return (
        "apiVersion: dapr.io/v1alpha1\n"
        "kind: Component\n"
        f"metadata: {{name: {name}}}\n"
        "spec:\n"
        f"  type: {type_}\n"
        "  version: v1\n"
    ) + (f"  metadata:\n{lines}" if lines else "")


def mqtt_pubsub(
    url: str, client_id: str, *metadata: tuple[str, str], type_: str = "pubsub.mqtt3"
) -> str:
    """A ``pubsub.mqtt3`` (or ``type_``) component named ``mqtt`` on the broker at ``url`` with
    ``consumerID`` ``client_id``, then ``metadata``."""
    return component("mqtt", type_, ("url", url), ("consumerID", client_id), *metadata)


SQLITE_STATESTORE = component("statestore", "state.sqlite", ("connectionString", "state.db"))
"""``statestore``: a ``state.sqlite`` store in ``state.db`` of the data dir."""


def local_secrets(secrets_file: Path | str) -> str:
    """Two secret stores: ``envsecrets`` (the environment) and ``filesecrets`` (the JSON file
    ``secrets_file``)."""
    return (
        component("envsecrets", "secretstores.local.env")
        + "---\n"
        + component("filesecrets", "secretstores.local.file", ("secretsFile", str(secrets_file)))
    )
