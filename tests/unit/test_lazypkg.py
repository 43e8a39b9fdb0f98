"""``deferred``: a module made without running it, run when one of its names is asked for.

``without_init``: a package module made without its ``__init__``, whose submodules import
as usual and whose other names run the real ``__init__`` when asked; a submodule name the
``__init__`` rebinds (uvicorn's ``main``) is named in ``rebound`` and gives what the
``__init__`` binds it to."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_runtime.support.lazypkg import deferred, without_init
from tests.support.fresh import run_python

INIT = """\
from lzpkg_probe.config import Config
from lzpkg_probe.main import main
RAN = True
"""


@pytest.fixture
def probe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A package ``lzpkg_probe`` on ``sys.path`` whose ``__init__`` rebinds ``main``; taken out
    of ``sys.modules`` again afterwards."""
    pkg = tmp_path / "lzpkg_probe"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(INIT)
    (pkg / "config.py").write_text("class Config:\n    pass\n")
    (pkg / "main.py").write_text("def main() -> int:\n    return 1\n")
    (pkg / "other.py").write_text("VALUE = 2\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "lzpkg_probe"
    for name in [m for m in sys.modules if m.split(".")[0] == "lzpkg_probe"]:
        del sys.modules[name]


def test_submodules_import_without_the_init(probe: str) -> None:
    pkg = without_init(probe, Config="config:Config")
    assert pkg.Config is sys.modules[f"{probe}.config"].Config
    assert pkg.other.VALUE == 2
    assert "RAN" not in vars(pkg)
    assert pkg.RAN is True  # not a submodule: the real __init__ runs


def test_a_rebound_name_runs_the_init(probe: str) -> None:
    pkg = without_init(probe, rebound=("main",))
    assert pkg.other.VALUE == 2
    assert "RAN" not in vars(pkg)
    assert pkg.main() == 1  # the function, not the module main.py
    assert pkg.RAN is True


def test_without_rebound_the_name_is_the_submodule(probe: str) -> None:
    """Why ``rebound`` exists: otherwise the name resolves to the module ``main.py``."""
    pkg = without_init(probe)
    assert pkg.main is sys.modules[f"{probe}.main"]
    assert "RAN" not in vars(pkg)


def test_a_package_already_imported_is_returned(probe: str) -> None:
    real = __import__(probe)
    assert without_init(probe, rebound=("main",)) is real


UVICORN = """
import sys
from edge_runtime.api.http import server
assert "uvicorn" not in sys.modules  # where httptools serves, uvicorn is not even imported
server._uvicorn_server(None, 1.0)  # the h11 fallback's server
assert "uvicorn.config" in sys.modules
assert "uvicorn.main" not in sys.modules and "click" not in sys.modules
import uvicorn
assert uvicorn._subprocess is sys.modules["uvicorn._subprocess"]  # a submodule: no __init__
assert "uvicorn.main" not in sys.modules
assert uvicorn.main is sys.modules["uvicorn.main"].main  # the command, not the module
assert uvicorn.run is sys.modules["uvicorn.main"].run
print("ok")
"""


def test_uvicorn_is_lean_and_whole_when_asked() -> None:
    assert run_python(UVICORN).strip() == "ok"


def test_a_deferred_module_runs_when_a_name_is_asked(probe: str) -> None:
    mod = deferred(f"{probe}.other")
    assert sys.modules[f"{probe}.other"] is mod
    assert "VALUE" not in vars(mod)
    ns: dict[str, object] = {}
    exec(f"from {probe} import other\nimport {probe}.other as again", ns)  # noqa: S102
    assert ns["other"] is mod
    assert ns["again"] is mod
    assert "VALUE" not in vars(mod)  # importing it did not run it
    assert not hasattr(mod, "__path__")  # the import system's probes do not run it either
    assert "VALUE" not in vars(mod)
    assert mod.VALUE == 2
    assert "VALUE" in vars(mod)
    with pytest.raises(AttributeError):
        mod.missing  # noqa: B018


def test_a_deferred_module_already_imported_is_returned(probe: str) -> None:
    real = __import__(f"{probe}.other").other
    assert deferred(f"{probe}.other") is real


def test_deferring_what_is_not_installed_is_an_import_error() -> None:
    with pytest.raises(ImportError):
        deferred("lzpkg_probe_absent.mod")


PROTOBUF = """
import sys
from edge_runtime.support import daprproto
daprproto.prepare()
from dapr.proto.runtime.v1 import pubsub_pb2
from google.protobuf import text_format
from edge_runtime.cloudsync.protocol import sync_pb2
pm = sys.modules["google.protobuf.internal.python_message"]
assert "GeneratedProtocolMessageType" not in vars(pm), "the upb backend ran python_message"
m = pubsub_pb2.PublishEventRequest(pubsub_name="p", topic="t", data=b"x", metadata={"a": "b"})
again = pubsub_pb2.PublishEventRequest.FromString(m.SerializeToString())
assert again == m and again.metadata["a"] == "b"
c = sync_pb2.Cursor(stream="s", epoch="e1", seq=2)
assert 'stream: "s"' in str(c) and text_format.Parse(str(c), sync_pb2.Cursor()) == c
assert "GeneratedProtocolMessageType" not in vars(pm)
assert pm.GeneratedProtocolMessageType  # asked for: it runs
print("ok")
"""


def test_protobuf_messages_work_without_the_pure_python_implementation() -> None:
    """``pbruntime``: with upb, messages encode, decode and print as text while the deferred
    pure-Python implementation never runs; asked for, it is there."""
    assert run_python(PROTOBUF).strip() == "ok"
