"""The parts of the protobuf runtime the sidecar loads.

``google.protobuf.descriptor_pool`` imports the pure-Python message implementation
(``internal.python_message``, and through it ``text_format``, the wire decoder and encoder, the
field containers: 1.1 MiB of RSS and 10 modules) for one call on a path only that backend takes.
With the upb backend (protobuf's default wherever its wheel exists) messages are built in C and
none of it runs. :func:`prepare`, called before the first message module is imported (the gRPC
API, the gRPC app channel, cloud sync), makes that module without running it
(:func:`edge_runtime.support.lazypkg.deferred`): whoever asks it for a name still gets it
(``PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python``, or printing a message as text, which loads
``text_format`` itself).
"""

from __future__ import annotations

from edge_runtime.support.lazypkg import deferred

DEFERRED = ("google.protobuf.internal.python_message",)


def prepare() -> None:
    """Put the deferred modules in place (a no-op for those already imported)."""
    for name in DEFERRED:
        deferred(name)
