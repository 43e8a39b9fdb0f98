"""Binding a ``grpc.aio`` server's port with one error type, for every gRPC server we run.

grpcio reports a port it cannot bind either by returning 0 or (newer releases) by raising
``RuntimeError``; :func:`bind` turns both into ``OSError`` naming the address. Imports grpc:
only modules that already need grpc import this one.
"""

from __future__ import annotations

from typing import Any

__all__ = ["bind"]


def bind(server: Any, address: str, credentials: Any = None) -> int:
    """Add ``address`` to ``server`` (TLS when ``credentials`` are given); the bound port.

    Raises ``OSError`` when the address cannot be bound.
    """
    try:
        if credentials is not None:
            port = int(server.add_secure_port(address, credentials))
        else:
            port = int(server.add_insecure_port(address))
    except RuntimeError as exc:  # grpcio >= 1.5x raises instead of returning 0
        raise OSError(f"cannot bind {address}: {exc}") from None
    if not port:
        raise OSError(f"cannot bind {address}")
    return port
