"""How much slower than a developer's machine the tests run here: ``EDGE_TEST_SLOWDOWN``, a
factor (default 1), which deploy/arm/test-arm.sh sets under qemu emulation (a sidecar's
imports alone take ~15 s on emulated armv7 on a busy 2-core host).

It scales only the limits after which a test gives up waiting (a sidecar to serve, READY=1,
a message to arrive), never an asserted timing. Loaded as a pytest plugin
(``-p tests.support.slowdown``), it also selects a Hypothesis profile without the
``too_slow`` health check and the per-example deadline: both measure the machine, not the code.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

SLOWDOWN = max(1.0, float(os.environ.get("EDGE_TEST_SLOWDOWN") or 1))


def limit(seconds: float) -> float:
    """``seconds`` scaled by the slowdown: how long to wait before giving up."""
    return seconds * SLOWDOWN


if SLOWDOWN > 1:
    settings.register_profile(
        "slow-machine", suppress_health_check=[HealthCheck.too_slow], deadline=None
    )
    settings.load_profile("slow-machine")
