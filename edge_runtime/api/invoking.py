"""Service invocation (contract §2.6, §3.8), shared by the HTTP and gRPC adapters.

A target ``appid`` (or ``appid.namespace``) equal to ours goes to our app through the local
app channel; any other goes through the name-resolution table (then mDNS, when configured:
:mod:`edge_runtime.invocation.discovery`) to that app's sidecar (``edge_runtime.internal.v1``
on its internal gRPC port), which hands it to its app. Either way the app gets the caller's
verb, path, query, body, content type and forwardable headers, plus
``dapr-caller-app-id``/``dapr-callee-app-id`` and a ``traceparent``
(:mod:`edge_runtime.invocation.headers`), and its answer (status, body, content type,
headers) comes back unchanged, whatever its status.

Errors are daprd's ``ERR_DIRECT_INVOKE``: 500 when the call could not be made or answered
(unknown app id or not found via mDNS, no app channel, remote invocation off, unreachable
sidecar, app down, timeout, open circuit breaker), 403 when the peer sidecar refused our
credentials. Calls to a peer that could not be connected to (so the app cannot have seen
them) are retried a few times with backoff unless a ``Resiliency`` retry policy targets the
app; such a policy, a timeout and a circuit breaker apply to every attempt, local or remote
(:mod:`edge_runtime.invocation.resiliency`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace

from edge_runtime import errors as E
from edge_runtime.api.universal import RuntimeView
from edge_runtime.appchannel import AppUnavailableError, InvokeCall, Invoker, InvokeResult
from edge_runtime.errors import APIError, GrpcCode
from edge_runtime.invocation import PeerError, PeerUnreachableError, RemoteInvoker
from edge_runtime.invocation.discovery import AppNotFoundError, Discovery
from edge_runtime.invocation.headers import for_app, forwardable, with_trace
from edge_runtime.invocation.nameresolution import NameResolution
from edge_runtime.invocation.resiliency import AppPolicies, AppPolicy, is_failure
from edge_runtime.observability import tracing
from edge_runtime.observability.metrics import (
    INVOCATION_REFUSED,
    INVOCATION_RETRIES,
    INVOCATIONS,
)

__all__ = ["InvokeRequest", "Invoking", "split_target"]

log = logging.getLogger("edge_runtime.invocation")

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class InvokeRequest:
    """One invocation as an adapter parsed it. ``headers`` are the caller's, any case; the
    core decides what is forwarded. ``query`` is the raw query string without ``?``."""

    target: str
    method: str
    verb: str = "POST"
    data: bytes = b""
    content_type: str = ""
    query: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)


class _FailedError(Exception):
    """An attempt got no answer from the app; ``error`` is what the caller gets if it is the
    last. ``retriable`` is false when trying again cannot help (credentials refused)."""

    def __init__(self, error: APIError, *, retriable: bool = True) -> None:
        super().__init__(error.message)
        self.error = error
        self.retriable = retriable


def split_target(target: str) -> tuple[str, str]:
    """``appid`` or ``appid.namespace`` → (app id, namespace or ""); anything else is
    ``ERR_DIRECT_INVOKE`` (500), as daprd answers an invalid app id."""
    parts = target.split(".")
    if not target or len(parts) > 2 or not all(parts):
        raise APIError(E.DIRECT_INVOKE, f"failed to invoke, id: {target}, err: invalid app id")
    return parts[0], parts[1] if len(parts) == 2 else ""


class Invoking:
    """Invocation over the local app channel and the peer sidecars. Coroutine-safe.

    ``remote`` is ``None`` when calls to other sidecars are impossible; ``remote_off`` then
    says why (the error the caller gets for an app found in ``names``). ``discovery`` finds
    the apps ``names`` does not list when ``names.mdns``; an address it gave that cannot be
    connected to is reported back to it before the built-in retry resolves again.
    """

    def __init__(
        self,
        view: RuntimeView,
        *,
        local: Invoker | None,
        names: NameResolution | None = None,
        remote: RemoteInvoker | None = None,
        remote_off: str = "",
        policies: AppPolicies | None = None,
        sleep: Sleep = asyncio.sleep,
        discovery: Discovery | None = None,
    ) -> None:
        self.view = view
        self.local = local
        self.names = names or NameResolution(namespace=view.namespace)
        self.remote = remote
        self.remote_off = remote_off or "remote invocation is not configured"
        self.policies = policies or AppPolicies()
        self._sleep = sleep
        self.discovery = discovery

    # ---------------------------------------------------------------- entry points
    async def invoke(self, req: InvokeRequest) -> InvokeResult:
        """Invoke ``req.method`` on app ``req.target``; the app's answer whatever its status.

        Raises :class:`APIError` (``ERR_DIRECT_INVOKE``) when there is no answer.
        """
        app_id, namespace = split_target(req.target)
        call = InvokeCall(
            method=req.method.lstrip("/"),
            http_verb=req.verb.upper() or "POST",
            data=req.data,
            content_type=req.content_type,
            query=req.query,
            headers=with_trace(forwardable(req.headers)),
        )
        own = self.view.app_id
        if app_id == own and namespace in ("", self.view.namespace):
            route = "local"
            attempt = self._local_attempt(call, own, self.view.namespace)
        else:
            route = "remote"
            attempt = self._remote_attempt(call, app_id, namespace)
        trace = tracing.bind(call.headers)  # the traceparent sent on (maybe a new one)
        try:
            result = await self._run(app_id, self.policies.for_app(app_id), attempt)
        except APIError:
            INVOCATIONS.labels(route, "failed").inc()
            raise
        finally:
            tracing.unbind(trace)
        INVOCATIONS.labels(route, "app_error" if is_failure(result.status) else "ok").inc()
        return result

    async def call_from_peer(
        self, call: InvokeCall, caller: str, caller_namespace: str
    ) -> InvokeResult:
        """A call a peer sidecar relayed (``CallLocal``) into our app. Raises
        :class:`APIError`; the peer applies its own policies, so none apply here."""
        call = replace(call, headers=with_trace(forwardable(call.headers)))
        trace = tracing.bind(call.headers)
        try:
            return await self._local(call, caller, caller_namespace)
        except _FailedError as failed:
            raise failed.error from None
        finally:
            tracing.unbind(trace)

    # ---------------------------------------------------------------- attempts
    def _local_attempt(
        self, call: InvokeCall, caller: str, namespace: str
    ) -> Callable[[], Awaitable[InvokeResult]]:
        if self.local is None:
            raise APIError(
                E.DIRECT_INVOKE_NOT_READY,
                f"failed to invoke, id: {self.view.app_id}, err: cannot invoke local "
                "endpoint: app channel not initialized (start the sidecar with --app-port)",
            )
        return lambda: self._local(call, caller, namespace)

    async def _local(self, call: InvokeCall, caller: str, namespace: str) -> InvokeResult:
        own = self.view.app_id
        if self.local is None:
            raise APIError(
                E.DIRECT_INVOKE_NOT_READY,
                f"failed to invoke, id: {own}, err: cannot invoke local endpoint: app channel "
                "not initialized",
            )
        call = replace(
            call,
            headers=for_app(call.headers, caller=caller, callee=own, caller_namespace=namespace),
        )
        try:
            return await self.local.invoke(call)
        except AppUnavailableError as exc:
            raise _FailedError(
                APIError(E.DIRECT_INVOKE, f"failed to invoke, id: {own}, err: {exc}")
            ) from None

    def _remote_attempt(
        self, call: InvokeCall, app_id: str, namespace: str
    ) -> Callable[[], Awaitable[InvokeResult]]:
        target = f"{app_id}.{namespace}" if namespace else app_id
        address = self.names.resolve(app_id, namespace)
        if address is None and not self.names.mdns:
            known = ", ".join(sorted(self.names.apps)) or "none"
            raise APIError(
                E.DIRECT_INVOKE,
                f"failed to invoke, id: {target}, err: app id {target!r} is not in the name "
                f"resolution table (--config; apps known: {known})",
            )
        discovery = self.discovery if address is None else None
        if self.remote is None or (address is None and discovery is None):
            raise APIError(E.DIRECT_INVOKE, f"failed to invoke, id: {target}, err: "
                           f"{self.remote_off}")
        remote = self.remote
        builtin = self.policies.for_app(app_id).retry is None

        async def attempt() -> InvokeResult:
            failures = 0
            while True:
                where = address
                if discovery is not None:
                    where = await _discover(discovery, target, app_id, namespace)
                assert where is not None
                try:
                    return await remote.call(
                        where, call, caller=self.view.app_id, callee=app_id
                    )
                except PeerUnreachableError as exc:
                    if discovery is not None:
                        discovery.unreachable(where)
                    failures += 1
                    retry = self.policies.builtin_retry
                    if not builtin or retry.exhausted(failures):
                        tries = f" after {failures} attempts" if builtin else ""
                        raise _FailedError(APIError(
                            E.DIRECT_INVOKE,
                            f"failed to invoke, id: {target}, err: could not reach its sidecar"
                            f"{tries}: {exc}",
                        )) from None
                    INVOCATION_RETRIES.labels("unreachable").inc()
                    await self._sleep(retry.delay(failures))
                except PeerError as exc:
                    raise _peer_failure(target, exc) from None

        return attempt

    # ---------------------------------------------------------------- policies
    async def _run(
        self, app_id: str, policy: AppPolicy, attempt: Callable[[], Awaitable[InvokeResult]]
    ) -> InvokeResult:
        """Run ``attempt`` under the app's timeout, retry and circuit breaker policies."""
        breaker = self.policies.breaker(app_id)
        failures = 0
        while True:
            ticket = None
            if breaker is not None:
                ticket = breaker.allow()
                if ticket is None:
                    INVOCATION_REFUSED.labels(app_id).inc()
                    name = policy.breaker.name if policy.breaker else ""
                    raise APIError(E.DIRECT_INVOKE, f"failed to invoke, id: {app_id}, err: "
                                   f"circuit breaker {name!r} is open")
            try:
                async with asyncio.timeout(policy.timeout_s):
                    result = await attempt()
            except TimeoutError:
                failed = _FailedError(APIError(
                    E.DIRECT_INVOKE, f"failed to invoke, id: {app_id}, err: timed out after "
                    f"{policy.timeout_s:g}s (Resiliency timeout)",
                ))
            except _FailedError as exc:
                failed = exc
            except BaseException:
                # Cancelled, or an error that is not the app's: still settle the ticket, or a
                # half-open breaker would wait for this trial call for ever.
                if breaker is not None and ticket is not None:
                    breaker.record(ticket, ok=False)
                raise
            else:
                if breaker is not None and ticket is not None:
                    breaker.record(ticket, ok=not is_failure(result.status))
                retry = policy.retry
                if retry is None or not policy.retries_status(result.status):
                    return result
                failures += 1
                if retry.exhausted(failures):
                    return result  # the last answer goes back as it is
                INVOCATION_RETRIES.labels("policy").inc()
                await self._sleep(retry.delay(failures))
                continue
            if breaker is not None and ticket is not None:
                breaker.record(ticket, ok=False)
            failures += 1
            retry = policy.retry
            if retry is None or not failed.retriable or retry.exhausted(failures):
                raise failed.error
            INVOCATION_RETRIES.labels("policy").inc()
            log.debug("invocation of %s failed (%s); retry %d", app_id, failed, failures)
            await self._sleep(retry.delay(failures))


async def _discover(discovery: Discovery, target: str, app_id: str, namespace: str) -> str:
    try:
        return await discovery.resolve(app_id, namespace)
    except AppNotFoundError as exc:
        raise _FailedError(
            APIError(E.DIRECT_INVOKE, f"failed to invoke, id: {target}, err: {exc}")
        ) from None


def _peer_failure(target: str, exc: PeerError) -> _FailedError:
    message = str(exc)
    if not message.startswith("failed to invoke"):  # the peer's own errors already say it
        message = f"failed to invoke, id: {target}, err: {message}"
    if exc.code in (GrpcCode.UNAUTHENTICATED, GrpcCode.PERMISSION_DENIED):
        return _FailedError(
            APIError(E.DIRECT_INVOKE_FORBIDDEN, f"{message} (the sidecar of {target} refused "
                     "our credentials: check --internal-token / the TLS certificates)"),
            retriable=False,
        )
    if exc.code is GrpcCode.NOT_FOUND:
        return _FailedError(APIError(E.DIRECT_INVOKE, message), retriable=False)
    return _FailedError(APIError(E.DIRECT_INVOKE, message))
