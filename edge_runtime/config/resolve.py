"""A component manifest's metadata → final values for one app (env, secrets, tokens).

Runs while the runtime builds components, after the secret stores are up. Each entry's value
comes from, in order:

* ``value`` when it is not empty;
* ``envRef``: the environment variable (Dapr's rule: only when ``value`` is empty). Dapr's deny
  list applies: ``APP_API_TOKEN`` and ``DAPR_*`` are never handed to a component. *Ours*: a
  missing variable is an error (Dapr silently uses ``""``);
* ``secretKeyRef``: key ``key`` (default: the secret's name) of secret ``name`` in the
  component's ``auth.secretStore``, or ``default_secret_store`` when it names none (Dapr uses
  ``kubernetes`` there on Kubernetes and nothing otherwise; the runtime picks ours). *Ours*: a
  missing secret or key is an error (Dapr leaves the value empty and logs);
* otherwise ``""``.

Then the tokens in the text are replaced, as Dapr does for every value (secrets included):
``{uuid}`` (a new uuid4 per occurrence), ``{appID}``, ``{podName}`` (there are no pods on a
device: the host name, unless the caller passes ``pod_name``) and ``{namespace}``
(``<namespace>.<app id>`` when a namespace, i.e. ``NAMESPACE``, is set, else the app id).
"""

from __future__ import annotations

import re
import socket
import uuid
from collections.abc import Callable, Mapping

from edge_runtime.config.manifest import ComponentManifest, ConfigProblem, MetadataItem
from edge_runtime.config.metadata import MetadataError, ResolvedMetadata, Value

SecretGetter = Callable[[str, str, str], str]
"""``get_secret(store, name, key) -> value``; raises ``LookupError`` for a missing store,
secret or key (the message is shown to the person)."""

_TOKEN = re.compile(r"\{(uuid|appID|podName|namespace)\}")


def in_scope(manifest: ComponentManifest, app_id: str) -> bool:
    """Whether ``app_id`` may load the component: listed in ``scopes``, or no scopes at all."""
    return not manifest.scopes or app_id in manifest.scopes


def expand_tokens(
    text: str, *, app_id: str, namespace: str = "", pod_name: str | None = None
) -> str:
    """``text`` with ``{uuid}``, ``{appID}``, ``{podName}`` and ``{namespace}`` replaced.

    Replacement text is not scanned again (an app id containing ``{uuid}`` stays as it is).
    """
    if "{" not in text:
        return text

    def one(m: re.Match[str]) -> str:
        which = m.group(1)
        if which == "uuid":
            return str(uuid.uuid4())
        if which == "appID":
            return app_id
        if which == "podName":
            return pod_name if pod_name is not None else socket.gethostname()
        return f"{namespace}.{app_id}" if namespace else app_id

    return _TOKEN.sub(one, text)


def env_ref_allowed(name: str) -> bool:
    """Dapr's deny list for ``envRef``: not empty, no spaces, not ``APP_API_TOKEN``/``DAPR_*``."""
    upper = name.upper()
    return bool(name) and " " not in name and upper != "APP_API_TOKEN" and (
        not upper.startswith("DAPR_")
    )


def resolve_metadata(
    manifest: ComponentManifest,
    *,
    app_id: str,
    environ: Mapping[str, str],
    namespace: str = "",
    get_secret: SecretGetter | None = None,
    default_secret_store: str | None = None,
    pod_name: str | None = None,
) -> ResolvedMetadata:
    """Every metadata entry of ``manifest`` resolved for ``app_id`` (see the module doc).

    ``environ`` is passed in (usually ``os.environ``) so the function has no hidden inputs.
    Raises :class:`MetadataError` listing every entry that could not be resolved (a missing or
    denied env var, a secret without a store, a missing secret or key), each with its mark.
    Exceptions from ``get_secret`` other than ``LookupError`` (a store used before ``init``)
    are programming errors and propagate.
    """
    values: list[Value] = []
    problems: list[ConfigProblem] = []
    store = manifest.secret_store or default_secret_store
    for item in manifest.metadata:
        try:
            raw = _raw_value(item, environ, get_secret, store)
        except LookupError as e:
            problems.append(
                ConfigProblem(item.mark, str(e.args[0] if e.args else e), manifest.describe(),
                              f"spec.metadata.{item.name}")
            )
            continue
        text = expand_tokens(raw, app_id=app_id, namespace=namespace, pod_name=pod_name)
        values.append(Value(item.name, text, item.mark))
    if problems:
        raise MetadataError(problems)
    return ResolvedMetadata(values)


def _raw_value(
    item: MetadataItem,
    environ: Mapping[str, str],
    get_secret: SecretGetter | None,
    store: str | None,
) -> str:
    """The entry's text before tokens; raises ``LookupError`` with a message for a person."""
    if item.value:
        return item.value
    if item.env_ref is not None:
        if not env_ref_allowed(item.env_ref):
            raise LookupError(
                f"envRef {item.env_ref!r} is not allowed: APP_API_TOKEN and DAPR_* variables"
                " are never passed to components"
            )
        if item.env_ref not in environ:
            raise LookupError(f"environment variable {item.env_ref!r} (envRef) is not set")
        return environ[item.env_ref]
    ref = item.secret_ref
    if ref is None:
        return item.value or ""
    if store is None:
        raise LookupError(
            f"secretKeyRef {ref.name!r} needs a secret store: set auth.secretStore to the name"
            " of a secretstores component"
        )
    if get_secret is None:
        raise LookupError(f"secretKeyRef {ref.name!r}: secret stores are not available here")
    try:
        return get_secret(store, ref.name, ref.key)
    except LookupError as e:
        reason = e.args[0] if e.args else type(e).__name__
        raise LookupError(
            f"secretKeyRef {ref.name!r} key {ref.key!r} in secret store {store!r}: {reason}"
        ) from e
