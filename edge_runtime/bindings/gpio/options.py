"""``bindings.gpio`` component metadata (DESIGN.md §5), decoded and checked with ``file:line``.

=================  ===========================================================================
``chip``           required: ``sim`` (the simulated chip), a device name (``gpiochip0``), a
                   path (``/dev/gpiochip0``) or a chip label (``pinctrl-rp1``)
``lines``          input lines, comma-separated: an offset (``17``), a line name
                   (``GPIO17``), either with a name of yours for events (``BUTTON=17``)
``outputs``        output lines, the same form
``edge``           ``rising``, ``falling`` or ``both`` (default): which edges are events
``bias``           inputs: ``as-is`` (default), ``disabled``, ``pull-up``, ``pull-down``
``activeLow``      every line: values and edges are inverted (a button to ground reads 1)
``debounce``       inputs: report an edge only once the line was stable this long (``10ms``)
``initialValue``   outputs: 0 (default) or 1, the value they start with
``simSocket``      ``chip: sim``: the socket path (default ``gpio-sim.sock`` in the data
                   dir); components naming the same socket share one simulated chip
=================  ===========================================================================

Plus the common binding metadata (``direction``, ``route``, no-code routing).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edge_runtime.bindings.gpio.backend import BIASES, Bias, Edge
from edge_runtime.bindings.options import CommonMetadata
from edge_runtime.config.manifest import ConfigProblem
from edge_runtime.config.metadata import MetadataError, decode, meta
from edge_runtime.registry import ComponentContext

__all__ = ["GpioMetadata", "GpioOptions", "LineSpec", "parse", "parse_lines"]

SIM = "sim"
DEFAULT_SIM_SOCKET = "gpio-sim.sock"
MAX_DEBOUNCE_S = 60.0


@dataclass(frozen=True)
class GpioMetadata(CommonMetadata):
    """The decoded ``spec.metadata`` (``debounce`` in seconds)."""

    chip: str = meta("chip", required=True,
                     help="sim, gpiochip0, /dev/gpiochip0 or a chip label")
    lines: str = meta("lines", default="", help="inputs: 17, GPIO27, BUTTON=22 ...")
    outputs: str = meta("outputs", default="", help="outputs, in the same form")
    edge: str = meta("edge", kind="choice", choices=("rising", "falling", "both"),
                     default="both")
    bias: str = meta("bias", kind="choice", choices=BIASES, default="as-is")
    active_low: bool = meta("activeLow", kind="bool", default=False)
    debounce: float = meta("debounce", kind="duration", default=0.0, minimum=0.0,
                           maximum=MAX_DEBOUNCE_S, help="e.g. 10ms; 0 turns it off")
    initial_value: int = meta("initialValue", kind="int", default=0, minimum=0, maximum=1)
    sim_socket: str = meta("simSocket", default="", help="chip sim: the socket path")


@dataclass(frozen=True, slots=True)
class LineSpec:
    """One configured line: ``line`` as the chip knows it (offset or name), ``alias`` as the
    user named it (``""`` when not)."""

    line: int | str
    alias: str = ""


@dataclass(frozen=True, slots=True)
class GpioOptions:
    """Everything the binding needs from its metadata, checked."""

    chip: str
    inputs: tuple[LineSpec, ...]
    outputs: tuple[LineSpec, ...]
    edge: Edge = "both"
    bias: Bias = "as-is"
    active_low: bool = False
    debounce_us: int = 0
    initial_value: int = 0
    sim_socket: Path | None = None


def parse_lines(text: str) -> tuple[LineSpec, ...]:
    """``"BUTTON=17, GPIO27"`` → line specs; raises ``ValueError`` saying what is wrong."""
    specs: list[LineSpec] = []
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            if text.strip():
                raise ValueError(f"an empty entry in {text!r}")
            continue
        alias, sep, line = (s.strip() for s in item.partition("="))
        if not sep:
            alias, line = "", alias
        if not line or (sep and not alias):
            raise ValueError(f"{item!r} is not a line: give an offset or a line name,"
                             " optionally as NAME=line")
        specs.append(LineSpec(int(line) if line.isdigit() else line, alias))
    return tuple(specs)


def parse(ctx: ComponentContext) -> GpioOptions:
    """Decode and check ``ctx``'s metadata; raises ``MetadataError`` listing every problem."""
    md, manifest = ctx.metadata, ctx.manifest
    settings = decode(GpioMetadata, md, manifest)
    problems: list[ConfigProblem] = []

    def bad(name: str, message: str) -> None:
        mark = md[name].mark if name in md else manifest.mark
        problems.append(ConfigProblem(mark, message, manifest.describe(), f"spec.metadata.{name}"))

    parsed: dict[str, tuple[LineSpec, ...]] = {}
    for name, text in (("lines", settings.lines), ("outputs", settings.outputs)):
        try:
            parsed[name] = parse_lines(text)
        except ValueError as exc:
            bad(name, str(exc))
            parsed[name] = ()
    inputs, outputs = parsed["lines"], parsed["outputs"]
    if not settings.chip.strip():
        bad("chip", "give the chip: sim, gpiochip0, /dev/gpiochip0 or its label")
    if not inputs and not outputs and not problems:
        bad("lines", "give input lines (lines), output lines (outputs) or both")
    seen: set[int | str] = set()
    for spec in (*inputs, *outputs):
        if spec.line in seen:
            bad("outputs" if spec in outputs else "lines", f"line {spec.line} is given twice")
        seen.add(spec.line)
    aliases = [s.alias for s in (*inputs, *outputs) if s.alias]
    for alias in sorted({a for a in aliases if aliases.count(a) > 1}):
        bad("lines", f"the name {alias!r} is given to two lines")
    if problems:
        raise MetadataError(problems)
    socket: Path | None = None
    if settings.chip.strip() == SIM:
        socket = ctx.resolve_path(settings.sim_socket or DEFAULT_SIM_SOCKET)
    return GpioOptions(
        chip=settings.chip.strip(),
        inputs=inputs,
        outputs=outputs,
        edge=settings.edge,  # type: ignore[arg-type]  # a checked choice of Edge
        bias=settings.bias,  # type: ignore[arg-type]  # a checked choice of Bias
        active_low=settings.active_low,
        debounce_us=round(settings.debounce * 1e6),
        initial_value=settings.initial_value,
        sim_socket=socket,
    )
