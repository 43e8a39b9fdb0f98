"""``pubsub.mqtt`` (alias of Dapr's ``pubsub.mqtt3``): MQTT 3.1.1/5 pub/sub over paho-mqtt.

Modules: ``pubsub`` (the component), ``client`` (paho on the event loop; the only paho
importer), ``supervisor`` (reconnects), ``acks`` (futures per message id), ``window``
(in-flight limit), ``backoff`` (jitter, takeover detection), ``topics`` (filters), ``metadata``.
"""

from edge_runtime.pubsub.mqtt.metadata import MqttMetadata
from edge_runtime.pubsub.mqtt.pubsub import MqttPubSub, create

__all__ = ["MqttMetadata", "MqttPubSub", "create"]
