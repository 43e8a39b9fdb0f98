"""The committed generated code is what ``sync.proto`` generates, and the messages round-trip."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

from edge_runtime.cloudsync.protocol import SYNC_METHOD, sync_pb2

ROOT = Path(__file__).resolve().parents[2]
PROTO = "edge_runtime/cloudsync/protocol/sync.proto"
GENERATED = ("sync_pb2.py", "sync_pb2.pyi", "sync_pb2_grpc.py")


def _committed_protoc_version() -> str:
    text = (ROOT / "edge_runtime/cloudsync/protocol/sync_pb2.py").read_text()
    found = re.search(r"Protobuf Python Version: (\S+)", text)
    assert found is not None
    return found.group(1)


@pytest.mark.skipif(
    importlib.util.find_spec("grpc_tools") is None,
    reason="grpcio-tools is not installed (pip install -e '.[test]')",
)
def test_generated_code_matches_the_proto(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", "-I", str(ROOT), f"--python_out={tmp_path}",
         f"--grpc_python_out={tmp_path}", f"--pyi_out={tmp_path}", str(ROOT / PROTO)],
        check=True, capture_output=True,
    )
    out = tmp_path / "edge_runtime/cloudsync/protocol"
    fresh = (out / "sync_pb2.py").read_text()
    found = re.search(r"Protobuf Python Version: (\S+)", fresh)
    assert found is not None
    if found.group(1) != _committed_protoc_version():
        pytest.skip(f"grpcio-tools here generates protobuf {found.group(1)} code; the committed"
                    f" code is {_committed_protoc_version()} (install grpcio-tools==1.85.1)")
    for name in GENERATED:
        committed = (ROOT / "edge_runtime/cloudsync/protocol" / name).read_text()
        assert (out / name).read_text() == committed, f"{name} is stale: regenerate it"


def test_messages_round_trip() -> None:
    msg = sync_pb2.DeviceMessage(batch=sync_pb2.Batch(
        stream="state:statestore", epoch="e1",
        records=[sync_pb2.Record(kind=sync_pb2.Record.STATE_UPSERT, target="statestore",
                                 key="k", seq=7, hlc=2**63 + 5, payload=b"\xa1aa\x01")],
    ))
    back = sync_pb2.DeviceMessage.FromString(msg.SerializeToString())
    assert back.WhichOneof("body") == "batch"
    assert back.batch.records[0].hlc == 2**63 + 5
    assert back.batch.records[0].kind == sync_pb2.Record.STATE_UPSERT
    assert SYNC_METHOD == "/edge_runtime.cloudsync.v1.CloudSync/Sync"
