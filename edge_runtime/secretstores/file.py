"""``secretstores.local.file``: secrets from a JSON file, read once at ``init``.

Metadata:

* ``secretsFile`` (required): the JSON file, whose top level must be an object. A relative path
  is looked for under the data dir first (DESIGN §5) and then, *ours*, relative to the current
  directory, so a Dapr-style ``./secrets.json`` next to where the runtime is started still
  works; the error names both places when neither exists.
* ``nestedSeparator`` (default ``:``): nested objects and arrays are flattened by joining keys
  (array indexes count as keys): ``{"db": {"user": "u"}}`` → ``db:user``.
* ``multiValued`` (default false): each top-level key is one secret holding its whole flattened
  sub-object: ``get_secret("db")`` → ``{"user": "u"}``. Otherwise every flattened key is a
  secret of one value: ``get_secret("db:user")`` → ``{"db:user": "u"}``.

Values become text: strings as they are, numbers as written in the file, ``true``/``false``,
``null`` → ``""``. (Dapr formats numbers and booleans with Go's ``%s``, which garbles them, and
drops top-level numbers, booleans and arrays with ``multiValued``; *ours* keeps them: a top-level
scalar is a one-value secret, a top-level array a flattened one.) Two paths flattening to the
same name (``{"a:b": 1, "a": {"b": 2}}``) are an error rather than a silent pick.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_runtime.config.metadata import declare_metadata, decode, meta, problem
from edge_runtime.errors import ComponentError
from edge_runtime.registry import ComponentContext
from edge_runtime.secretstores import SecretNotFoundError, SecretStoreError


@dataclass(frozen=True, slots=True)
class FileMetadata:
    """``secretstores.local.file`` metadata."""

    secrets_file: str = meta("secretsFile", required=True, help="the JSON file of secrets")
    nested_separator: str = meta("nestedSeparator", default=":", help="joins nested keys")
    multi_valued: bool = meta("multiValued", kind="bool", default=False)


class FileSecretStore:
    """Secrets read from the first existing file of ``candidates`` at :meth:`init`."""

    def __init__(
        self,
        candidates: Iterable[Path],
        *,
        nested_separator: str = ":",
        multi_valued: bool = False,
        label: str = "secretstores.local.file",
    ) -> None:
        self.candidates = tuple(candidates)
        self.separator = nested_separator or ":"
        self.multi_valued = multi_valued
        self.label = label
        self._secrets: dict[str, dict[str, str]] | None = None

    async def init(self) -> None:
        """Read and flatten the file; raises ``ComponentError`` saying what is wrong with it."""
        self.load()

    def load(self) -> None:
        """Synchronous :meth:`init` (usable before an event loop exists)."""
        path = next((p for p in self.candidates if p.exists()), None)
        if path is None:
            tried = " or ".join(f"'{p}'" for p in self.candidates)
            raise ComponentError(f"{self.label}: secretsFile not found (looked for {tried})")
        try:
            text = path.read_text(encoding="utf-8")
            data = json.loads(text, parse_int=str, parse_float=str, parse_constant=_no_constant)
        except json.JSONDecodeError as e:
            raise ComponentError(
                f"{self.label}: secretsFile '{path}' is not valid JSON: {e.msg} at line "
                f"{e.lineno} column {e.colno}"
            ) from None
        except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:
            raise ComponentError(f"{self.label}: cannot read secretsFile '{path}': {e}") from None
        if not isinstance(data, dict):
            raise ComponentError(
                f"{self.label}: secretsFile '{path}' must hold a JSON object at the top level,"
                f" got {type(data).__name__}"
            )
        self._secrets = self._index(data, path)

    def _index(self, data: dict[str, Any], path: Path) -> dict[str, dict[str, str]]:
        secrets: dict[str, dict[str, str]] = {}
        flat: dict[str, str] = {}
        try:
            if not self.multi_valued:
                _flatten(data, (), self.separator, flat)
                return {k: {k: v} for k, v in flat.items()}
            for key, value in data.items():
                if isinstance(value, dict | list):
                    secrets[key] = {}
                    _flatten(value, (), self.separator, secrets[key])
                else:
                    secrets[key] = {key: _text(value)}
        except KeyError as e:
            raise ComponentError(
                f"{self.label}: secretsFile '{path}': two entries flatten to the name "
                f"{e.args[0]!r} (nestedSeparator {self.separator!r})"
            ) from None
        return secrets

    async def close(self) -> None:
        """Forget the secrets."""
        self._secrets = None

    def get_secret_sync(
        self,
        key: str,
        metadata: Mapping[str, str] | None = None,  # noqa: ARG002 - protocol; local stores ignore it
    ) -> dict[str, str]:
        """The secret ``key``; raises :class:`SecretNotFoundError` or, before ``init``,
        :class:`SecretStoreError`."""
        found = self._loaded().get(key)
        if found is None:
            raise SecretNotFoundError(key)
        return dict(found)

    async def get_secret(
        self, key: str, metadata: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        """See :meth:`get_secret_sync`."""
        return self.get_secret_sync(key, metadata)

    async def bulk_get(
        self,
        metadata: Mapping[str, str] | None = None,  # noqa: ARG002 - protocol; local stores ignore it
    ) -> dict[str, dict[str, str]]:
        """Every secret: ``{secret name: {name: value}}``."""
        return {k: dict(v) for k, v in self._loaded().items()}

    def _loaded(self) -> dict[str, dict[str, str]]:
        if self._secrets is None:
            raise SecretStoreError(f"{self.label}: the store is not initialised")
        return self._secrets


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _flatten(value: Any, path: tuple[str, ...], sep: str, out: dict[str, str]) -> None:
    """Add ``value``'s leaves to ``out`` under joined paths; ``KeyError(name)`` on a clash."""
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(v, (*path, k), sep, out)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _flatten(v, (*path, str(i)), sep, out)
    else:
        name = sep.join(path)
        if name in out:
            raise KeyError(name)
        out[name] = _text(value)


@declare_metadata(FileMetadata)
def create(ctx: ComponentContext) -> FileSecretStore:
    """The factory; raises ``MetadataError`` for bad metadata (the file is read at ``init``)."""
    md = decode(FileMetadata, ctx.metadata, ctx.manifest)
    if not md.secrets_file.strip():
        raise problem(ctx.manifest, ctx.metadata, "secretsFile", "must name a JSON file")
    candidates = [ctx.resolve_path(md.secrets_file)]
    in_cwd = Path(md.secrets_file).expanduser().absolute()
    if in_cwd != candidates[0].absolute():
        candidates.append(in_cwd)
    return FileSecretStore(
        candidates,
        nested_separator=md.nested_separator,
        multi_valued=md.multi_valued,
        label=ctx.manifest.describe(),
    )
