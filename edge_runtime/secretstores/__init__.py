"""The secret-store building block: the contract every store meets, its errors, and the
synchronous accessor used while components are being built.

A store is made by its factory (``create(ctx)``), then ``await init()`` before use and
``await close()`` on shutdown. Reads never change the store, so they are safe to run
concurrently. ``metadata`` on reads is the request metadata of the secrets API; the local
stores ignore it.

``secretKeyRef`` entries are resolved while components are loaded (``config/resolve.py``), a
synchronous step, so every store also offers :meth:`SecretStore.get_secret_sync`. The local
stores are cheap and synchronous underneath (an env lookup, a dict read after ``init``); a
store that talks to a network would implement it by blocking with a timeout.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, runtime_checkable

from edge_runtime.config.resolve import SecretGetter


class SecretStoreError(Exception):
    """A secret store failed to answer (the API reports ``ERR_SECRET_GET``)."""


class SecretNotFoundError(SecretStoreError, LookupError):
    """The store has no secret named ``key`` (or the secret has no such key)."""

    def __init__(self, key: str, message: str = "") -> None:
        super().__init__(message or f"secret {key!r} not found")
        self.key = key


class SecretStoreNotFoundError(SecretStoreError, LookupError):
    """No secret store is configured under that name."""


@runtime_checkable
class SecretStore(Protocol):
    """What the runtime needs from a secret store."""

    async def init(self) -> None:
        """Load or connect; raises ``ComponentError`` with a clear message on failure."""

    async def close(self) -> None:
        """Release what ``init`` acquired; safe to call twice."""

    async def get_secret(
        self, key: str, metadata: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        """The secret ``key`` as ``{name: value}``; raises :class:`SecretNotFoundError`."""

    async def bulk_get(
        self, metadata: Mapping[str, str] | None = None
    ) -> dict[str, dict[str, str]]:
        """Every secret: ``{secret name: {name: value}}``."""

    def get_secret_sync(
        self, key: str, metadata: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        """:meth:`get_secret` for synchronous callers (component loading, after ``init``)."""


def secret_getter(stores: Mapping[str, SecretStore]) -> SecretGetter:
    """A ``get_secret(store, name, key)`` for ``config.resolve.resolve_metadata``.

    ``stores`` maps component names to initialised stores (read at call time, so stores added
    later are seen). The function raises :class:`SecretStoreNotFoundError` for an unknown store
    and :class:`SecretNotFoundError` for a missing secret or key (both ``LookupError``).
    """

    def get_secret(store: str, name: str, key: str) -> str:
        found = stores.get(store)
        if found is None:
            known = ", ".join(sorted(stores)) or "none"
            raise SecretStoreNotFoundError(
                f"no secret store named {store!r} is loaded (secret stores: {known})"
            )
        secret = found.get_secret_sync(name)
        if key not in secret:
            raise SecretNotFoundError(name, f"secret {name!r} has no key {key!r}")
        return secret[key]

    return get_secret
