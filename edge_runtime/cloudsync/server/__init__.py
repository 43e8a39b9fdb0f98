"""The cloud runtime: ``edge-runtime cloud serve``.

``store`` is the storage contract (:class:`~edge_runtime.cloudsync.server.store.CloudStore`)
with its SQLite implementation in ``sqlite``; ``service`` is the gRPC sync endpoint; ``http``
the API for cloud apps; ``main`` puts them together.
"""
