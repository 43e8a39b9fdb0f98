"""``bindings.mqtt`` (alias Dapr's ``bindings.mqtt3``) metadata (contract §6.4).

Dapr's names: ``url`` (required), ``topic`` (required: the filter read, wildcards allowed,
and the default topic ``create`` publishes to), ``consumerID`` (default: the app id; the two
connections are ``<consumerID>-producer`` and ``<consumerID>-consumer``, DESIGN.md §5),
``retain``, ``cleanSession`` (default false, as Dapr's code), ``qos``, ``caCert``,
``clientCert``, ``clientKey`` and ``backOffMaxRetries`` (accepted; retries of delivery to the
app follow the binding's inbound ``Resiliency`` policy instead). Plus everything
``pubsub.mqtt`` takes (``protocol``, ``keepAlive``, ``reconnectMin``/``reconnectMax``,
``inflight``, ``connectTimeout``, ``publishTimeout``), the outbox limits (``maxMessages``,
``maxBytes``, ``onFull``, ``drainRateLimit``) and the common ``direction`` and ``route``.

Differences from Dapr, on purpose: ``consumerID`` defaults to the app id (Dapr requires it);
``qos`` is used for both subscribing and publishing (Dapr fixes it at 1 and ignores the entry).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from edge_runtime.bindings.options import CommonMetadata
from edge_runtime.config.metadata import decode, meta, problem
from edge_runtime.outbox.limits import OutboxMetadata
from edge_runtime.pubsub.mqtt import topics
from edge_runtime.pubsub.mqtt.metadata import MqttMetadata, MqttSettings
from edge_runtime.pubsub.mqtt.metadata import parse as parse_mqtt
from edge_runtime.registry import ComponentContext

__all__ = ["BindingSettings", "MqttBindingMetadata", "parse"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MqttBindingMetadata(CommonMetadata, OutboxMetadata, MqttMetadata):
    """Every entry ``bindings.mqtt`` reads (for ``edge-runtime validate``)."""

    topic: str = meta("topic", required=True, help="the filter read; the topic create uses")
    back_off_max_retries: int = meta("backOffMaxRetries", kind="int", default=0, minimum=-1,
                                     help="accepted; the inbound Resiliency policy retries")


@dataclass(frozen=True, slots=True)
class BindingSettings:
    """The topic and the two connections' settings."""

    topic: str
    producer: MqttSettings
    consumer: MqttSettings


def parse(ctx: ComponentContext) -> BindingSettings:
    """Decode and check; raise ``MetadataError`` naming ``file:line`` and the entry."""
    md = decode(MqttBindingMetadata, ctx.metadata, ctx.manifest)
    topic = md.topic.strip()
    try:
        topics.validate_filter(topic)
    except ValueError as exc:
        raise problem(ctx.manifest, ctx.metadata, "topic", str(exc)) from None
    if "backOffMaxRetries" in ctx.metadata:
        log.info("%s: backOffMaxRetries is not used: delivery to the app is retried with the"
                 " binding's inbound Resiliency policy", ctx.manifest.describe())
    settings = parse_mqtt(ctx)
    return BindingSettings(
        topic,
        replace(settings, client_id=f"{settings.client_id}-producer"),
        replace(settings, client_id=f"{settings.client_id}-consumer"),
    )
