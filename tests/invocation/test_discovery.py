"""The pure parts of mDNS name resolution: our records, what we announce, the instance table
(no zeroconf, no sockets)."""

from __future__ import annotations

import pytest

from edge_runtime.invocation.discovery import (
    Instance,
    Instances,
    announced_addresses,
    instance_label,
    instance_of,
    txt_of,
)

TXT = {b"txtvers": b"1", b"appid": b"b", b"namespace": b"", b"port": b"50002"}


def test_instance_labels_are_fresh_and_fit_a_dns_label() -> None:
    one, two = instance_label("sensors"), instance_label("sensors")
    assert one != two
    assert one.startswith("sensors-")
    assert len(one) == len("sensors-") + 6
    long = instance_label("x" * 80)
    assert len(long.encode()) == 63
    assert long.startswith("x" * 56 + "-")


def test_txt_of() -> None:
    assert txt_of("b", "plant", 50002) == {
        "txtvers": "1", "appid": "b", "namespace": "plant", "port": "50002",
    }


def test_instance_of_keeps_what_can_be_dialed() -> None:
    inst = instance_of(
        "b-1.x", TXT, ["10.0.0.2", "fe80::1", "fd00::5", "10.0.0.2", "nonsense"], 50002, 7.0
    )
    assert inst == Instance("b-1.x", "b", "", ("10.0.0.2:50002", "[fd00::5]:50002"), 7.0)
    plant = instance_of("b-2.x", {**TXT, b"namespace": b"plant"}, ["10.0.0.3"], 1, 0.0)
    assert plant is not None
    assert plant.namespace == "plant"


@pytest.mark.parametrize(
    ("txt", "addresses", "port"),
    [
        ({**TXT, b"appid": b""}, ["10.0.0.2"], 50002),
        ({**TXT, b"appid": None}, ["10.0.0.2"], 50002),
        ({**TXT, b"appid": b"a.b"}, ["10.0.0.2"], 50002),
        ({**TXT, b"namespace": b"bad ns"}, ["10.0.0.2"], 50002),
        (TXT, ["fe80::1"], 50002),
        (TXT, [], 50002),
        (TXT, ["10.0.0.2"], 0),
    ],
)
def test_instance_of_refuses_what_is_not_a_sidecar(
    txt: dict[bytes, bytes | None], addresses: list[str], port: int
) -> None:
    assert instance_of("n", txt, addresses, port, 0.0) is None


LOCAL = ["127.0.0.1", "192.168.1.20", "10.0.0.5", "fd00::20", "::1"]


def test_announced_addresses() -> None:
    assert announced_addresses("192.168.1.20", LOCAL) == ["192.168.1.20"]
    assert announced_addresses("0.0.0.0", LOCAL) == ["192.168.1.20", "10.0.0.5"]
    assert announced_addresses("::", LOCAL) == ["192.168.1.20", "10.0.0.5", "fd00::20"]
    assert announced_addresses("0.0.0.0", ["127.0.0.1", "::1"]) == ["127.0.0.1"]
    with pytest.raises(ValueError, match=r"must be an IP address, got 'pi\.local'"):
        announced_addresses("pi.local", LOCAL)


def inst(name: str, app: str, *addresses: str, ns: str = "", seen: float = 0.0) -> Instance:
    return Instance(name, app, ns, addresses, seen)


def test_instances_take_turns_per_app_and_namespace() -> None:
    table = Instances(ttl_s=60, suspect_s=30)
    table.put(inst("b-2", "b", "10.0.0.3:2"))
    table.put(inst("b-1", "b", "10.0.0.2:1", "10.1.0.2:1"))
    table.put(inst("b-9", "b", "10.0.0.9:9", ns="plant"))
    table.put(inst("c-1", "c", "10.0.0.4:4"))
    assert [table.pick("b", "", 0.0) for _ in range(4)] == [
        "10.0.0.2:1", "10.0.0.3:2", "10.0.0.2:1", "10.0.0.3:2",
    ]
    assert table.pick("b", "plant", 0.0) == "10.0.0.9:9"
    assert table.pick("d", "", 0.0) is None
    assert table.pick("c", "plant", 0.0) is None


def test_unreachable_addresses_are_avoided_while_there_are_others() -> None:
    table = Instances(ttl_s=60, suspect_s=30)
    table.put(inst("b-old", "b", "10.0.0.2:1"))
    table.put(inst("b-new", "b", "10.0.0.2:7", "10.1.0.2:7"))
    table.unreachable("10.0.0.2:1", now=100.0)
    assert {table.pick("b", "", 101.0) for _ in range(4)} == {"10.0.0.2:7"}
    table.unreachable("10.0.0.2:7", now=101.0)  # the other address of that instance
    assert {table.pick("b", "", 102.0) for _ in range(4)} == {"10.1.0.2:7"}
    table.unreachable("10.1.0.2:7", now=102.0)  # all suspect: still answer
    assert {table.pick("b", "", 103.0) for _ in range(4)} == {"10.0.0.2:1", "10.0.0.2:7"}
    # Suspicion ends: 10.0.0.2:1 (suspect until 130) is back, the others (until 131, 132)
    # not yet.
    assert {table.pick("b", "", 130.5) for _ in range(4)} == {"10.0.0.2:1"}
    assert len(table) == 2


def test_stale_instances_and_drop() -> None:
    table = Instances(ttl_s=60, suspect_s=30)
    table.put(inst("b-1", "b", "10.0.0.2:1", seen=100.0))
    table.put(inst("b-2", "b", "10.0.0.3:2", seen=150.0))
    assert table.stale("b", "", now=159.0) == []
    assert table.stale("b", "", now=160.0) == ["b-1"]
    assert table.stale("b", "", now=210.0) == ["b-1", "b-2"]
    table.put(inst("b-1", "b", "10.0.0.2:1", seen=205.0))
    assert table.stale("b", "", now=210.0) == ["b-2"]
    assert table.drop("b-2")
    assert not table.drop("b-2")
    assert table.pick("b", "", 210.0) == "10.0.0.2:1"
