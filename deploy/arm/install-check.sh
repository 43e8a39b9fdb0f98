#!/bin/sh
# Inside the arm64 rootfs (deploy/arm/test-arm.sh --install-check): install.sh as a user runs
# it, the units' ExecStart as systemd would start them (run_unit.py), install.sh again (it must
# keep the settings), then --uninstall and --uninstall --purge.   Usage: install-check.sh WHEEL
set -eu
WHEEL="$1"
INSTALL=/src/deploy/systemd/install.sh
HERE=/src/deploy/arm
fail() { echo "install-check: FAILED: $*" >&2; exit 1; }

sh "$INSTALL" --source "$WHEEL" --with-mosquitto --app-id sensor --instance second
getent passwd edge-runtime >/dev/null || fail "no user"
getent group gpio >/dev/null || fail "no gpio group"
id -nG edge-runtime | grep -qw gpio || fail "user not in gpio"
id -nG edge-runtime | grep -qw dialout || fail "user not in dialout"
grep -q 'KERNEL=="gpiochip\*", GROUP="gpio"' /etc/udev/rules.d/60-edge-runtime-gpio.rules ||
  fail "no udev rule"
[ -L /etc/systemd/system/multi-user.target.wants/edge-runtime.service ] || fail "not enabled"
[ -L /etc/systemd/system/multi-user.target.wants/edge-runtime@second.service ] ||
  fail "instance not enabled"
[ -f /etc/mosquitto/conf.d/edge-runtime.conf ] || fail "no mosquitto config"
/opt/edge-runtime/venv/bin/edge-runtime validate --resources-path /etc/edge-runtime/components

# As an operator would: free ports (this chroot shares the host's network). The broker is a
# port nobody listens on: the unit must start and serve offline (and leave no session on a
# broker the host may run).
echo "EDGE_RUNTIME_ARGS=--dapr-http-port 0 --dapr-grpc-port 0 --metrics-port 0" \
  >> /etc/edge-runtime/edge-runtime.env
for f in /etc/edge-runtime/components/pubsub.yaml /etc/edge-runtime/second/components/pubsub.yaml; do
  sed -i 's#tcp://127.0.0.1:1883#tcp://127.0.0.1:9#' "$f"
done
python3 "$HERE/run_unit.py" /etc/systemd/system/edge-runtime.service
python3 "$HERE/run_unit.py" /etc/systemd/system/edge-runtime@.service second

# Again: idempotent, and the settings stay as the operator left them.
sh "$INSTALL" --source "$WHEEL" --with-mosquitto --app-id other >/dev/null
grep -q '^APP_ID=sensor$' /etc/edge-runtime/edge-runtime.env || fail "settings overwritten"
[ "$(grep -c 'gpiochip' /etc/udev/rules.d/60-edge-runtime-gpio.rules)" = 1 ] || fail "rule doubled"

sh "$INSTALL" --uninstall
[ ! -e /opt/edge-runtime ] || fail "venv left"
[ ! -e /etc/systemd/system/edge-runtime.service ] || fail "unit left"
[ ! -e /etc/systemd/system/multi-user.target.wants/edge-runtime.service ] || fail "still enabled"
[ ! -e /etc/udev/rules.d/60-edge-runtime-gpio.rules ] || fail "udev rule left"
[ -f /var/lib/edge-runtime/state.db ] || fail "data not kept"
[ -f /etc/edge-runtime/edge-runtime.env ] || fail "settings not kept"

sh "$INSTALL" --uninstall --purge
! getent passwd edge-runtime >/dev/null || fail "user left"
! getent group gpio >/dev/null || fail "gpio group (ours) left"
[ ! -e /var/lib/edge-runtime ] || fail "data left after --purge"
echo "install-check: install, start as the unit, reinstall, uninstall and purge: all good"
