"""State key prefixes (the component's ``keyPrefix``), as in contract §2.3.

Stored key = ``<prefix>||<key>``; the prefix comes from the strategy:
``appid`` (default; no prefix when the app id is empty), ``name`` (the component name),
``namespace`` (``<NAMESPACE>.<app-id>``, or the app id when NAMESPACE is unset), ``none``
(the raw key) or any other string (used as the prefix itself).
"""

from __future__ import annotations

from dataclasses import dataclass

SEPARATOR = "||"


class IllegalKeyError(ValueError):
    """The key contains ``||``, which the prefix scheme reserves."""


@dataclass(frozen=True, slots=True)
class KeyPrefix:
    """Applies and strips one store's key prefix."""

    prefix: str

    @classmethod
    def from_strategy(
        cls, strategy: str, *, app_id: str, component: str, namespace: str = ""
    ) -> KeyPrefix:
        """Build from the ``keyPrefix`` metadata value; raises ``ValueError`` on a bad one."""
        s = strategy.strip()
        match s.lower():
            case "" | "appid":
                prefix = app_id
            case "name":
                prefix = component
            case "namespace":
                prefix = f"{namespace}.{app_id}" if namespace else app_id
            case "none":
                prefix = ""
            case _:
                prefix = s
        if SEPARATOR in prefix:
            raise ValueError(f"keyPrefix {strategy!r} must not contain {SEPARATOR!r}")
        return cls(prefix)

    def apply(self, key: str) -> str:
        """The stored key; raises :class:`IllegalKeyError` for a key containing ``||``."""
        if SEPARATOR in key:
            raise IllegalKeyError(f"input key/keyPrefix '{key}' can't contain '{SEPARATOR}'")
        return f"{self.prefix}{SEPARATOR}{key}" if self.prefix else key

    def strip(self, stored: str) -> str:
        """The key as the app knows it."""
        if self.prefix and stored.startswith(self.prefix + SEPARATOR):
            return stored[len(self.prefix) + len(SEPARATOR) :]
        return stored
