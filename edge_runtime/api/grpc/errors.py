"""Render :class:`~edge_runtime.errors.APIError` as a gRPC status with rich details (§4.3).

The status carries a ``google.rpc.Status`` in the ``grpc-status-details-bin`` trailer with an
``ErrorInfo`` (``reason`` is what the SDK's ``DaprGrpcError.error_code()`` returns), plus a
``ResourceInfo`` and a ``BadRequest`` when the error has them.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, TypeVar

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from edge_runtime import errors as E
from edge_runtime.errors import APIError
from edge_runtime.observability import tracing

log = logging.getLogger("edge_runtime.api.grpc")

R = TypeVar("R")


def _pack(message: Any) -> Any:
    out = any_pb2.Any()
    out.Pack(message)
    return out


def to_status(err: APIError) -> Any:
    """The ``grpc.Status`` for ``err``."""
    details = [
        _pack(
            error_details_pb2.ErrorInfo(
                reason=err.kind.info_reason,
                domain="dapr.io",
                metadata=dict(err.metadata),
            )
        )
    ]
    if err.resource is not None:
        details.append(
            _pack(
                error_details_pb2.ResourceInfo(
                    resource_type=err.resource[0],
                    resource_name=err.resource[1],
                    description=err.message,
                )
            )
        )
    if err.violations:
        details.append(
            _pack(
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(
                            field=v.field, description=v.description
                        )
                        for v in err.violations
                    ]
                )
            )
        )
    status = status_pb2.Status(code=int(err.kind.grpc), message=err.message, details=details)
    return rpc_status.to_status(status)


async def abort(context: grpc.aio.ServicerContext, err: APIError) -> NoReturn:
    """End the call with ``err``'s status (raises, as ``abort_with_status`` does)."""
    await context.abort_with_status(to_status(err))
    raise AssertionError("abort_with_status returned")  # pragma: no cover


def _traceparent(context: Any) -> str:
    return next(
        (v for k, v in context.invocation_metadata() or () if k == "traceparent"), ""
    )


def handled(
    method: Callable[[Any, Any, Any], Awaitable[R]],
) -> Callable[[Any, Any, Any], Awaitable[R]]:
    """Wrap a servicer method so an :class:`APIError` becomes its gRPC status, and any other
    exception is logged with its traceback and answered INTERNAL; the call's ``traceparent``
    metadata is the trace context of what is logged meanwhile."""

    @functools.wraps(method)
    async def wrapper(self: Any, request: Any, context: Any) -> R:
        trace = tracing.bind(functools.partial(_traceparent, context))  # read only if logging
        try:
            return await method(self, request, context)
        except APIError as err:
            await abort(context, err)
        except grpc.aio.AbortError:
            raise
        except Exception:
            # grpc would answer UNKNOWN with the exception's text; the caller gets INTERNAL
            # and a pointer to the log, as over HTTP (never internals on the wire).
            log.exception("unhandled error serving %s", method.__name__)
            await abort(context, APIError(E.INTERNAL, "internal error; see the sidecar log"))
        finally:
            tracing.unbind(trace)

    return wrapper
