"""``pubsub.mqtt`` (alias of Dapr's ``pubsub.mqtt3``): MQTT 3.1.1/5 pub/sub over paho-mqtt.

Modules: ``pubsub`` (the component), ``client`` (paho on the event loop; the only paho
importer), ``supervisor`` (reconnects), ``acks`` (futures per message id), ``window``
(in-flight limit), ``backoff`` (jitter, takeover detection), ``topics`` (filters), ``metadata``.

The package's names are loaded on first use, so the pure modules (``topics``, ``backoff``) can
be imported without paho (cloud sync and the in-memory broker use them).

paho's client imports ``urllib.request`` at its top, for one use: reading an ``mqtt_proxy``
setting from the environment when PySocks is installed. It pulls ``http.client`` and the
``email`` package (2.3 MiB of RSS, 31 modules), so it is made here, before any of our modules
imports paho, without running (:func:`edge_runtime.support.lazypkg.deferred`); the
``CoalescingClient`` asks paho for a proxy only when one is set (``coalesce.py``), and anyone
else asking ``urllib.request`` for a name gets the real module.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from edge_runtime.support.lazypkg import deferred

deferred("urllib.request")

if TYPE_CHECKING:
    from edge_runtime.pubsub.mqtt.metadata import MqttMetadata
    from edge_runtime.pubsub.mqtt.pubsub import MqttPubSub, create

__all__ = ["MqttMetadata", "MqttPubSub", "create"]

_WHERE = {"MqttMetadata": "metadata", "MqttPubSub": "pubsub", "create": "pubsub"}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
