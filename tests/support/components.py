"""Component YAML that many tests and benches start a sidecar with."""

from __future__ import annotations

__all__ = ["SQLITE_STATESTORE"]

SQLITE_STATESTORE = """\
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {name: statestore}
spec:
  type: state.sqlite
  version: v1
  metadata:
  - {name: connectionString, value: state.db}
"""
"""``statestore``: a ``state.sqlite`` store in ``state.db`` of the data dir (a document of its
own, ending in a newline: join others with ``---``)."""
