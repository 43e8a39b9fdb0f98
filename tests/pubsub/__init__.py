"""Tests of the pub/sub building block (MQTT against private mosquitto brokers)."""
