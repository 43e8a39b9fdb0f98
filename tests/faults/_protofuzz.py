"""Random protobuf messages for hostile-input tests: every field of a message, from its
descriptor, filled (or not) with values chosen to hurt: names the sidecar knows next to junk,
unknown enum numbers, big integers, ``Any`` with wrong type URLs."""

from __future__ import annotations

from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from hypothesis import strategies as st

NAMES = st.sampled_from(["statestore", "memstore", "pubsub", "loop", "envsecrets", "nope",
                         "hostile", "", "a||b", "upsert", "delete", "create", "get",
                         "application/json", "contentType", "ttlInSeconds", "rawPayload",
                         "true", "-1", "99999999999"])
TEXT = NAMES | st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)
TYPE_URLS = st.sampled_from(["", "type.googleapis.com/google.protobuf.StringValue",
                             "type.googleapis.com/dapr.proto.common.v1.StateItem",
                             "type.googleapis.com/no.such.Type", "garbage", "/"])


F = FieldDescriptor


def _scalar(field: FieldDescriptor) -> st.SearchStrategy[Any]:
    t = field.type
    if t == FieldDescriptor.TYPE_STRING:
        return TEXT
    if t == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=200) | st.sampled_from([b"{}", b"null", b'{"a":1}', b"\xff"])
    if t == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if t in (F.TYPE_INT32, F.TYPE_SINT32, F.TYPE_SFIXED32):
        return st.integers(-(2**31), 2**31 - 1)
    if t in (FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32):
        return st.integers(0, 2**32 - 1)
    if t in (F.TYPE_INT64, F.TYPE_SINT64, F.TYPE_SFIXED64):
        return st.integers(-(2**63), 2**63 - 1)
    if t in (FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64):
        return st.integers(0, 2**64 - 1)
    if t in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return st.floats(allow_nan=True, width=32)
    if t == FieldDescriptor.TYPE_ENUM:  # proto3 enums are open: unknown numbers arrive too
        return st.sampled_from([v.number for v in field.enum_type.values]) | st.integers(-5, 99)
    raise AssertionError(f"no strategy for {field.full_name}")


def fill(data: st.DataObject, message: Any, depth: int = 0) -> Any:
    """Set a random subset of ``message``'s fields to random values (nested to depth 3)."""
    if message.DESCRIPTOR.full_name == "google.protobuf.Any":
        message.type_url = data.draw(TYPE_URLS)
        message.value = data.draw(st.binary(max_size=60))
        return message
    for field in message.DESCRIPTOR.fields:
        if not data.draw(st.integers(0, 3)):
            continue
        sub: Descriptor | None = field.message_type
        target = getattr(message, field.name)
        if sub is not None and sub.GetOptions().map_entry:
            key_f, value_f = sub.fields_by_name["key"], sub.fields_by_name["value"]
            for _ in range(data.draw(st.integers(0, 3))):
                key = data.draw(_scalar(key_f))
                if value_f.message_type is not None:
                    fill(data, target[key], depth + 1)
                else:
                    target[key] = data.draw(_scalar(value_f))
        elif field.is_repeated:
            for _ in range(data.draw(st.integers(0, 3))):
                if sub is not None:
                    if depth < 3:
                        fill(data, target.add(), depth + 1)
                else:
                    target.append(data.draw(_scalar(field)))
        elif sub is not None:
            if depth < 3:
                fill(data, target, depth + 1)
                target.SetInParent()
        else:
            setattr(message, field.name, data.draw(_scalar(field)))
    return message


