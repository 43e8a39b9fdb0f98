import time, select
from datetime import timedelta
from pathlib import Path
import gpiod
from gpiod.line import Edge, Direction, Bias
from tests.gpio_vm.guest import make_chip
dev, sysfs = make_chip()
pull = sysfs / "sim_gpio0" / "pull"
def bounce(levels):
    for l in levels: pull.write_text("pull-up" if l else "pull-down")
def collect(req, secs=1.0):
    out=[]; end=time.monotonic()+secs
    while time.monotonic()<end:
        if req.wait_edge_events(0.1):
            out += [(str(e.event_type), e.line_seqno) for e in req.read_edge_events()]
    return out
deb = gpiod.LineSettings(direction=Direction.INPUT, edge_detection=Edge.BOTH, debounce_period=timedelta(milliseconds=200))
with gpiod.request_lines(dev, {0: deb}) as r:
    print("A info", gpiod.Chip(dev).get_line_info(0))
    bounce([1,0,1,0,1]); print("A direct", collect(r))
    bounce([0]); print("A single fall", collect(r))
none = gpiod.LineSettings(direction=Direction.INPUT, edge_detection=Edge.NONE, debounce_period=timedelta(milliseconds=200))
with gpiod.request_lines(dev, {0: none}) as r:
    r.reconfigure_lines({0: deb})
    print("B info", gpiod.Chip(dev).get_line_info(0))
    bounce([1,0,1,0,1]); print("B reconf", collect(r))
    bounce([0]); print("B single fall", collect(r))
nodeb = gpiod.LineSettings(direction=Direction.INPUT, edge_detection=Edge.NONE)
with gpiod.request_lines(dev, {0: nodeb}) as r:
    r.reconfigure_lines({0: deb})
    print("C info", gpiod.Chip(dev).get_line_info(0))
    bounce([1,0,1,0,1]); print("C reconf", collect(r))
