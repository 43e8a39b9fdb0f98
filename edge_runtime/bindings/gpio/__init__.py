"""``bindings.gpio`` (ours): GPIO lines through libgpiod v2, or a simulated chip.

Modules: ``binding`` (the component: edges in through the durable input path, ``get``/``set``/
``pulse`` out), ``options`` (its metadata), ``backend`` (the protocol a chip implements),
``kernel`` (libgpiod via the ``gpiod`` package; the only module importing it, and imported
only for a real chip), ``sim`` (``chip: sim``: a simulated chip driven over a Unix socket in
the data dir) and ``simclient`` (a client for that socket, with a command line).
"""

from edge_runtime.bindings.gpio.binding import GpioBinding, GpioOutputs, create
from edge_runtime.bindings.gpio.options import GpioMetadata, GpioOptions

__all__ = ["GpioBinding", "GpioMetadata", "GpioOptions", "GpioOutputs", "create"]
