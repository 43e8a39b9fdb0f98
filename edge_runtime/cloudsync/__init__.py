"""Cloud sync: the device side (change-logs, the cloud outbox, the sync client, desired state)
and the cloud runtime (``server/``), over our own gRPC protocol (``protocol/sync.proto``).

Only :mod:`edge_runtime.cloudsync.hlc`, :mod:`~edge_runtime.cloudsync.changelog` and
:mod:`~edge_runtime.cloudsync.topics` are imported by the rest of the runtime without a
``cloudsync.grpc`` component; grpc and cbor2 load only when one is configured.
"""
