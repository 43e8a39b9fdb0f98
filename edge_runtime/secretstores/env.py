"""``secretstores.local.env``: secrets from the process environment.

Metadata: ``prefix`` (default empty). ``get_secret(key)`` reads ``<prefix><key>`` and answers
``{key: value}``; ``bulk_get`` answers every variable whose name starts with the prefix (and is
longer than it), prefix removed: ``{name: {name: value}}``. Matching is case-sensitive (Linux).

As in Dapr, ``APP_API_TOKEN`` and ``DAPR_*`` variables are never handed out (checked on the
full name, prefix included). Dapr answers ``{key: ""}`` for a missing or denied variable; *ours*
raises :class:`SecretNotFoundError`, so a typo'd ``secretKeyRef`` fails loudly at startup.
The environment is read at each call, as Dapr does.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from edge_runtime.config.metadata import declare_metadata, decode, meta
from edge_runtime.config.resolve import env_ref_allowed
from edge_runtime.registry import ComponentContext
from edge_runtime.secretstores import SecretNotFoundError


@dataclass(frozen=True, slots=True)
class EnvMetadata:
    """``secretstores.local.env`` metadata."""

    prefix: str = meta("prefix", default="", help="only variables starting with this")


class EnvSecretStore:
    """Reads secrets from ``environ`` (``os.environ`` unless given, e.g. by a test)."""

    def __init__(self, prefix: str = "", environ: Mapping[str, str] | None = None) -> None:
        self.prefix = prefix
        self._environ = environ if environ is not None else os.environ

    async def init(self) -> None:
        """Nothing to load."""

    async def close(self) -> None:
        """Nothing to release."""

    def get_secret_sync(
        self,
        key: str,
        metadata: Mapping[str, str] | None = None,  # noqa: ARG002 - protocol; local stores ignore it
    ) -> dict[str, str]:
        """``{key: value}`` of ``<prefix><key>``; raises :class:`SecretNotFoundError`."""
        name = self.prefix + key
        if not key or not env_ref_allowed(name):
            raise SecretNotFoundError(key, f"secret {key!r} is not available from the environment")
        value = self._environ.get(name)
        if value is None:
            raise SecretNotFoundError(key, f"environment variable {name!r} is not set")
        return {key: value}

    async def get_secret(
        self, key: str, metadata: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        """See :meth:`get_secret_sync`."""
        return self.get_secret_sync(key, metadata)

    async def bulk_get(
        self,
        metadata: Mapping[str, str] | None = None,  # noqa: ARG002 - protocol; local stores ignore it
    ) -> dict[str, dict[str, str]]:
        """``{name: {name: value}}`` for every allowed variable with the prefix."""
        n = len(self.prefix)
        return {
            name[n:]: {name[n:]: value}
            for name, value in self._environ.items()
            if len(name) > n and name.startswith(self.prefix) and env_ref_allowed(name)
        }


@declare_metadata(EnvMetadata)
def create(ctx: ComponentContext) -> EnvSecretStore:
    """The factory; raises ``MetadataError`` for bad metadata."""
    md = decode(EnvMetadata, ctx.metadata, ctx.manifest)
    return EnvSecretStore(md.prefix)
