"""Metadata every binding has, read by the runtime rather than by the component.

* ``direction`` (contract §6.1): ``input``, ``output`` or ``input, output``. Without it, a
  binding is used for every side it implements. With it, only the sides named; and an input
  binding whose direction names ``input`` is delivered to the app without the ``OPTIONS``
  probe (contract §3.5). Dapr ignores words it does not know; we report them.
* ``route``: the app path input events are posted to (default: the component name).
* No-code routing (DESIGN.md §5): ``targetPubsub`` + ``targetTopic`` publish each input event
  through that pubsub's durable outbox; ``targetStateStore`` + ``targetKey`` save it to that
  state store under that key (the latest event wins). A routed binding's events go there and
  not to the app, so they flow whether or not the sidecar has an app.

A component's metadata dataclass inherits :class:`CommonMetadata`, so ``edge-runtime
validate`` checks these names too; :func:`parse_options` adds the checks across fields.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge_runtime.config.manifest import ComponentManifest, ConfigProblem
from edge_runtime.config.metadata import MetadataError, ResolvedMetadata, decode, meta

__all__ = ["BindingOptions", "CommonMetadata", "PubsubRoute", "StateRoute", "parse_options"]

_DIRECTIONS = ("input", "output")


@dataclass(frozen=True)
class CommonMetadata:
    """The runtime's binding metadata (Dapr's names, plus our no-code routing)."""

    direction: str = meta("direction", default="", help="input, output or input,output")
    route: str = meta("route", default="", help="app path for input events (default: name)")
    target_pubsub: str = meta("targetPubsub", default="")
    target_topic: str = meta("targetTopic", default="")
    target_state_store: str = meta("targetStateStore", default="")
    target_key: str = meta("targetKey", default="")


@dataclass(frozen=True, slots=True)
class PubsubRoute:
    """Publish input events to ``topic`` on pubsub ``pubsub``."""

    pubsub: str
    topic: str


@dataclass(frozen=True, slots=True)
class StateRoute:
    """Save input events to ``store`` under ``key``."""

    store: str
    key: str


@dataclass(frozen=True, slots=True)
class BindingOptions:
    """What the runtime does with a binding, from its metadata.

    ``input``/``output`` say which sides the direction allows (both when it is not given);
    ``direction_given`` whether ``direction`` named them explicitly.
    """

    input: bool = True
    output: bool = True
    direction_given: bool = False
    route: str = ""
    target: PubsubRoute | StateRoute | None = None


def parse_options(manifest: ComponentManifest, md: ResolvedMetadata) -> BindingOptions:
    """Read and check the common metadata; raise ``MetadataError`` listing every problem with
    ``file:line``."""
    common = decode(CommonMetadata, md, manifest)
    problems: list[ConfigProblem] = []

    def bad(name: str, message: str) -> None:
        mark = md[name].mark if name in md else manifest.mark
        problems.append(ConfigProblem(mark, message, manifest.describe(), f"spec.metadata.{name}"))

    words = [w.strip().lower() for w in common.direction.split(",") if w.strip()]
    unknown = [w for w in words if w not in _DIRECTIONS]
    if unknown:
        bad("direction", f"expected input, output or input,output, got {common.direction!r}")
    given = bool(words) and not unknown
    target: PubsubRoute | StateRoute | None = None
    pairs = (
        ("targetPubsub", common.target_pubsub, "targetTopic", common.target_topic),
        ("targetStateStore", common.target_state_store, "targetKey", common.target_key),
    )
    for first, first_value, second, second_value in pairs:
        if bool(first_value.strip()) != bool(second_value.strip()):
            have, missing = (first, second) if first_value.strip() else (second, first)
            bad(have, f"{have} needs {missing} as well")
    if common.target_pubsub.strip() and common.target_state_store.strip():
        bad("targetStateStore", "give either targetPubsub or targetStateStore, not both")
    elif common.target_pubsub.strip() and common.target_topic.strip():
        target = PubsubRoute(common.target_pubsub.strip(), common.target_topic.strip())
    elif common.target_state_store.strip() and common.target_key.strip():
        target = StateRoute(common.target_state_store.strip(), common.target_key.strip())
    if target is not None and given and "input" not in words:
        bad("direction", "targetPubsub/targetStateStore route input events, but direction"
            f" is {common.direction!r}")
    if problems:
        raise MetadataError(problems)
    return BindingOptions(
        input="input" in words if given else True,
        output="output" in words if given else True,
        direction_given=given,
        route=common.route.strip(),
        target=target,
    )
