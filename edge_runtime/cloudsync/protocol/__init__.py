"""The cloud sync wire protocol: ``sync.proto`` and the Python generated from it.

``sync_pb2.py``, ``sync_pb2.pyi`` and ``sync_pb2_grpc.py`` are generated (never edit them) with::

    python -m grpc_tools.protoc -I . --python_out=. --grpc_python_out=. --pyi_out=. \\
        edge_runtime/cloudsync/protocol/sync.proto

run from the repository root; ``tests/cloudsync/test_protocol.py`` regenerates them into a
temporary folder and fails when they differ from the committed files.
"""

from edge_runtime.support import pbruntime

pbruntime.prepare()  # before sync_pb2 imports google.protobuf (see the module)

SERVICE = "edge_runtime.cloudsync.v1.CloudSync"
SYNC_METHOD = f"/{SERVICE}/Sync"
