"""The one error table: every API error has one code, one HTTP status and one gRPC status.

Everything the API reports goes through :class:`APIError`. Building blocks raise their own
small exceptions (``state.ETagMismatchError``, ``StorageFullError`` ...); the universal API core
(``api/universal.py``) translates those into an ``APIError`` with the entry from this table
that matches the operation, so the HTTP and gRPC adapters only render.

The codes and statuses follow Dapr's (see ``reference/dapr-api-contract.md`` §2); the last
block holds the errors Dapr has no entry for (DESIGN.md §5).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any


class GrpcCode(IntEnum):
    """gRPC status codes (numbers as on the wire), kept here so grpc is never imported."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


@dataclass(frozen=True, slots=True)
class ErrorKind:
    """One row of the table: the legacy ``errorCode``, HTTP status, gRPC code and reason."""

    code: str
    http: int
    grpc: GrpcCode
    reason: str = ""

    @property
    def info_reason(self) -> str:
        """The ``ErrorInfo.reason`` (the ``DAPR_*`` code where Dapr has one, else the code)."""
        return self.reason or self.code


G = GrpcCode

# --- generic -------------------------------------------------------------------------------
MALFORMED_REQUEST = ErrorKind("ERR_MALFORMED_REQUEST", 400, G.INVALID_ARGUMENT)
BODY_TOO_LARGE = ErrorKind("ERR_BODY_TOO_LARGE", 413, G.RESOURCE_EXHAUSTED)
NOT_FOUND = ErrorKind("ERR_NOT_FOUND", 404, G.NOT_FOUND)
METHOD_NOT_ALLOWED = ErrorKind("ERR_METHOD_NOT_ALLOWED", 405, G.UNIMPLEMENTED)
INTERNAL = ErrorKind("ERROR", 500, G.INTERNAL)
UNAUTHENTICATED = ErrorKind("ERR_UNAUTHENTICATED", 401, G.UNAUTHENTICATED)

# --- health, metadata, shutdown ------------------------------------------------------------
HEALTH_NOT_READY = ErrorKind("ERR_HEALTH_NOT_READY", 500, G.INTERNAL)
HEALTH_APPID_NOT_MATCH = ErrorKind("ERR_HEALTH_APPID_NOT_MATCH", 500, G.INTERNAL)
OUTBOUND_HEALTH_NOT_READY = ErrorKind("ERR_OUTBOUND_HEALTH_NOT_READY", 500, G.INTERNAL)
METADATA_GET = ErrorKind("ERR_METADATA_GET", 500, G.INTERNAL)

# --- state (contract §2.3) -----------------------------------------------------------------
STATE_STORE_NOT_CONFIGURED = ErrorKind(
    "ERR_STATE_STORE_NOT_CONFIGURED", 500, G.FAILED_PRECONDITION, "DAPR_STATE_NOT_CONFIGURED"
)
STATE_STORE_NOT_FOUND = ErrorKind(
    "ERR_STATE_STORE_NOT_FOUND", 400, G.INVALID_ARGUMENT, "DAPR_STATE_NOT_FOUND"
)
STATE_ILLEGAL_KEY = ErrorKind(
    "ERR_MALFORMED_REQUEST", 400, G.INVALID_ARGUMENT, "DAPR_STATE_ILLEGAL_KEY"
)
STATE_GET = ErrorKind("ERR_STATE_GET", 500, G.INTERNAL)
STATE_SAVE = ErrorKind("ERR_STATE_SAVE", 500, G.INTERNAL)
STATE_DELETE = ErrorKind("ERR_STATE_DELETE", 500, G.INTERNAL)
STATE_SAVE_ETAG_MISMATCH = ErrorKind("ERR_STATE_SAVE", 409, G.ABORTED)
STATE_DELETE_ETAG_MISMATCH = ErrorKind("ERR_STATE_DELETE", 409, G.ABORTED)
STATE_BULK_DELETE = ErrorKind("ERR_STATE_BULK_DELETE", 500, G.INTERNAL)
STATE_BULK_DELETE_ETAG_MISMATCH = ErrorKind("ERR_STATE_BULK_DELETE", 409, G.ABORTED)
STATE_BULK_GET = ErrorKind("ERR_STATE_BULK_GET", 500, G.INTERNAL)
STATE_TRANSACTION = ErrorKind("ERR_STATE_TRANSACTION", 500, G.INTERNAL)
STATE_TRANSACTIONS_NOT_SUPPORTED = ErrorKind(
    "ERR_STATE_STORE_NOT_SUPPORTED", 500, G.UNIMPLEMENTED, "DAPR_STATE_TRANSACTIONS_NOT_SUPPORTED"
)
STATE_QUERY_NOT_SUPPORTED = ErrorKind(
    "ERR_STATE_STORE_NOT_SUPPORTED", 500, G.INTERNAL, "DAPR_STATE_QUERYING_NOT_SUPPORTED"
)
NOT_SUPPORTED_STATE_OPERATION = ErrorKind("ERR_NOT_SUPPORTED_STATE_OPERATION", 400, G.UNIMPLEMENTED)
STATE_TOO_MANY_TRANSACTIONS = ErrorKind(
    "ERR_STATE_STORE_TOO_MANY_TRANSACTIONS",
    400,
    G.INVALID_ARGUMENT,
    "DAPR_STATE_TOO_MANY_TRANSACTIONS",
)

# --- pub/sub (contract §2.4) ---------------------------------------------------------------
PUBSUB_NOT_CONFIGURED = ErrorKind(
    "ERR_PUBSUB_NOT_CONFIGURED", 400, G.FAILED_PRECONDITION, "DAPR_PUBSUB_NOT_CONFIGURED"
)
PUBSUB_EMPTY = ErrorKind("ERR_PUBSUB_EMPTY", 404, G.INVALID_ARGUMENT, "DAPR_PUBSUB_NAME_EMPTY")
PUBSUB_NOT_FOUND = ErrorKind(
    "ERR_PUBSUB_NOT_FOUND", 404, G.INVALID_ARGUMENT, "DAPR_PUBSUB_NOT_FOUND"
)
TOPIC_NAME_EMPTY = ErrorKind(
    "ERR_TOPIC_NAME_EMPTY", 404, G.INVALID_ARGUMENT, "DAPR_PUBSUB_TOPIC_NAME_EMPTY"
)
PUBSUB_REQUEST_METADATA = ErrorKind(
    "ERR_PUBSUB_REQUEST_METADATA", 400, G.INVALID_ARGUMENT, "DAPR_PUBSUB_METADATA_DESERIALIZATION"
)
PUBSUB_CLOUD_EVENTS_SER = ErrorKind(
    "ERR_PUBSUB_CLOUD_EVENTS_SER", 500, G.INVALID_ARGUMENT, "DAPR_PUBSUB_CLOUD_EVENT_CREATION"
)
PUBSUB_EVENTS_SER = ErrorKind("ERR_PUBSUB_EVENTS_SER", 400, G.INVALID_ARGUMENT)
PUBSUB_PUBLISH_MESSAGE = ErrorKind(
    "ERR_PUBSUB_PUBLISH_MESSAGE", 500, G.INTERNAL, "DAPR_PUBSUB_PUBLISH_MESSAGE"
)
# Streaming subscriptions (contract §4.4): daprd answers these with plain errors (UNKNOWN);
# ours say which mistake it was. A bad first message is the caller's, so not retried by SDKs.
PUBSUB_STREAM_REQUEST = ErrorKind("ERR_PUBSUB_STREAM_REQUEST", 400, G.INVALID_ARGUMENT)
PUBSUB_STREAM_EXISTS = ErrorKind("ERR_PUBSUB_STREAM_EXISTS", 409, G.ALREADY_EXISTS)
PUBSUB_SUBSCRIBE = ErrorKind("ERR_PUBSUB_SUBSCRIBE", 500, G.INTERNAL)

# --- output bindings (contract §2.5) -------------------------------------------------------
INVOKE_OUTPUT_BINDING = ErrorKind("ERR_INVOKE_OUTPUT_BINDING", 500, G.INTERNAL)

# --- secrets (contract §2.10) --------------------------------------------------------------
SECRET_STORES_NOT_CONFIGURED = ErrorKind(
    "ERR_SECRET_STORES_NOT_CONFIGURED", 500, G.FAILED_PRECONDITION
)
SECRET_STORE_NOT_FOUND = ErrorKind("ERR_SECRET_STORE_NOT_FOUND", 401, G.INVALID_ARGUMENT)
SECRET_PERMISSION_DENIED = ErrorKind("ERR_PERMISSION_DENIED", 403, G.PERMISSION_DENIED)
SECRET_GET = ErrorKind("ERR_SECRET_GET", 500, G.INTERNAL)

# --- service invocation (contract §2.6) ----------------------------------------------------
# daprd reports every invocation failure as ERR_DIRECT_INVOKE; only the status differs.
DIRECT_INVOKE = ErrorKind("ERR_DIRECT_INVOKE", 500, G.INTERNAL)
DIRECT_INVOKE_NO_APP_ID = ErrorKind("ERR_DIRECT_INVOKE", 404, G.NOT_FOUND)
DIRECT_INVOKE_NOT_READY = ErrorKind("ERR_DIRECT_INVOKE", 500, G.INTERNAL)
DIRECT_INVOKE_FORBIDDEN = ErrorKind("ERR_DIRECT_INVOKE", 403, G.PERMISSION_DENIED)

# --- configuration (contract §2.11) -------------------------------------------------------
CONFIGURATION_STORE_NOT_CONFIGURED = ErrorKind(
    "ERR_CONFIGURATION_STORE_NOT_CONFIGURED", 500, G.FAILED_PRECONDITION
)
CONFIGURATION_STORE_NOT_FOUND = ErrorKind(
    "ERR_CONFIGURATION_STORE_NOT_FOUND", 400, G.INVALID_ARGUMENT
)
CONFIGURATION_GET = ErrorKind("ERR_CONFIGURATION_GET", 500, G.INTERNAL)
CONFIGURATION_SUBSCRIBE = ErrorKind("ERR_CONFIGURATION_SUBSCRIBE", 500, G.INTERNAL)
CONFIGURATION_UNSUBSCRIBE = ErrorKind("ERR_CONFIGURATION_UNSUBSCRIBE", 500, G.INTERNAL)

# --- ours (DESIGN.md §5): all RESOURCE_EXHAUSTED on gRPC ----------------------------------
PUBSUB_OUTBOX_FULL = ErrorKind("ERR_PUBSUB_OUTBOX_FULL", 429, G.RESOURCE_EXHAUSTED)
STORAGE_FULL = ErrorKind("ERR_STORAGE_FULL", 507, G.RESOURCE_EXHAUSTED)


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """A ``google.rpc.BadRequest`` field violation."""

    field: str
    description: str


@dataclass(slots=True)
class APIError(Exception):
    """An error the API reports to its caller, rendered by each adapter.

    ``resource`` is ``(resource_type, resource_name)`` for a ``ResourceInfo`` detail;
    ``metadata`` goes into ``ErrorInfo.metadata``; ``headers`` are extra HTTP response headers.
    """

    kind: ErrorKind
    message: str
    metadata: dict[str, str] = field(default_factory=dict)
    resource: tuple[str, str] | None = None
    violations: tuple[FieldViolation, ...] = ()
    headers: dict[str, str] = field(default_factory=dict)
    extra_body: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.kind.code}: {self.message}"

    @property
    def rich(self) -> bool:
        """Whether the error carries details (Dapr's kit errors) rather than the legacy shape."""
        return bool(self.kind.reason or self.resource or self.violations or self.metadata)

    def json_body(self) -> dict[str, Any]:
        """The HTTP JSON body: ``errorCode`` and ``message``, plus ``details`` when rich."""
        body: dict[str, Any] = {"errorCode": self.kind.code, "message": self.message}
        if self.rich:
            details: list[dict[str, Any]] = [
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": self.kind.info_reason,
                    "domain": "dapr.io",
                    "metadata": dict(self.metadata),
                }
            ]
            if self.resource is not None:
                details.append(
                    {
                        "@type": "type.googleapis.com/google.rpc.ResourceInfo",
                        "resource_type": self.resource[0],
                        "resource_name": self.resource[1],
                        "owner": "",
                        "description": self.message,
                    }
                )
            if self.violations:
                details.append(
                    {
                        "@type": "type.googleapis.com/google.rpc.BadRequest",
                        "field_violations": [
                            {"field": v.field, "description": v.description}
                            for v in self.violations
                        ],
                    }
                )
            body["details"] = details
        body.update(self.extra_body)
        return body


class StorageFullError(Exception):
    """The disk (or the data dir's ``--max-disk-mb`` budget) has no room for a write.

    Raised by any store; the API core reports it as ``ERR_STORAGE_FULL`` (507).
    """


class ComponentError(Exception):
    """A component could not be built or initialised (bad metadata, unreachable file ...)."""
