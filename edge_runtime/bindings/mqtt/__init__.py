"""``bindings.mqtt`` (alias Dapr's ``bindings.mqtt3``): MQTT ingest into the inbox and
``create`` through the durable outbox, over ``pubsub.mqtt``'s client (the only paho user)."""

from edge_runtime.bindings.mqtt.binding import MqttBinding, create
from edge_runtime.bindings.mqtt.metadata import MqttBindingMetadata

__all__ = ["MqttBinding", "MqttBindingMetadata", "create"]
