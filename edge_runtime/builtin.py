"""The one list of built-in component types."""

from __future__ import annotations

from edge_runtime.bindings import memory as bindings_memory
from edge_runtime.pubsub import memory as pubsub_memory
from edge_runtime.registry import LazyFactory, Registry
from edge_runtime.secretstores import env as secret_env
from edge_runtime.secretstores import file as secret_file
from edge_runtime.state import memory as state_memory
from edge_runtime.state.sqlite import store as state_sqlite


def builtin_registry() -> Registry:
    """A registry holding every built-in type."""
    r = Registry()
    r.register("state.sqlite", state_sqlite.create)
    r.register("state.in-memory", state_memory.create)
    r.register("pubsub.in-memory", pubsub_memory.create)
    r.register("pubsub.mqtt", LazyFactory("edge_runtime.pubsub.mqtt"), aliases=("pubsub.mqtt3",))
    r.register("bindings.in-memory", bindings_memory.create)
    r.register("bindings.serial", LazyFactory("edge_runtime.bindings.serial"))
    r.register("bindings.cron", LazyFactory("edge_runtime.bindings.cron"))
    r.register("bindings.mqtt", LazyFactory("edge_runtime.bindings.mqtt"),
               aliases=("bindings.mqtt3",))
    r.register("bindings.gpio", LazyFactory("edge_runtime.bindings.gpio"))
    r.register("cloudsync.grpc", LazyFactory("edge_runtime.cloudsync.component"))
    r.register("secretstores.local.env", secret_env.create)
    r.register("secretstores.local.file", secret_file.create)
    return r
