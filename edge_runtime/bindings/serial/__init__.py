"""``bindings.serial``: a serial port as an input and output binding (pyserial, the fd on the
event loop).

Modules: ``binding`` (the component), ``port`` (pyserial: the only importer), ``framing``
(pure frame decoders), ``payload`` (what ``write`` sends), ``metadata``, ``report`` (counted,
rate-limited drop logging).
"""

from edge_runtime.bindings.serial.binding import SerialBinding, create
from edge_runtime.bindings.serial.metadata import SerialMetadata, SerialSettings

__all__ = ["SerialBinding", "SerialMetadata", "SerialSettings", "create"]
