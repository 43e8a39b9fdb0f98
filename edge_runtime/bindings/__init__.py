"""The bindings building block (DESIGN.md §5 "Bindings contract").

* :mod:`~edge_runtime.bindings.contract`: :class:`OutputBinding`, :class:`InputBinding`, the
  :data:`InputHandler` the runtime gives input bindings, :class:`BindingResponse` and the
  errors;
* :mod:`~edge_runtime.bindings.options`: the metadata every binding has (``direction``,
  ``route``, no-code routing), read by the runtime;
* :mod:`~edge_runtime.bindings.memory`: ``bindings.in-memory``, a loopback binding (output
  ``create`` comes back as an input event).

The runtime side (input events through the inbox to the app, the output API) lives in
``runtime/binding_inputs.py`` and ``api/bindings.py``.
"""

from edge_runtime.bindings.contract import (
    Binding,
    BindingError,
    BindingResponse,
    InputBinding,
    InputHandler,
    InvokeError,
    OutputBinding,
    UnsupportedOperationError,
)
from edge_runtime.bindings.options import BindingOptions, PubsubRoute, StateRoute, parse_options

__all__ = [
    "Binding",
    "BindingError",
    "BindingOptions",
    "BindingResponse",
    "InputBinding",
    "InputHandler",
    "InvokeError",
    "OutputBinding",
    "PubsubRoute",
    "StateRoute",
    "UnsupportedOperationError",
    "parse_options",
]
