#!/bin/sh
# Install edge-runtime as a systemd service on Debian / Raspberry Pi OS (run as root).
#
#   install.sh [--source PATH] [--app-id ID] [--instance ID] [--with-mosquitto] [--no-enable]
#   install.sh --uninstall [--purge]
#
#   --source PATH      a wheel or a project folder to install (default: the tree holding this
#                      script); pip options come from the usual PIP_* environment variables
#   --app-id ID        APP_ID written to a new /etc/edge-runtime/edge-runtime.env
#   --instance ID      also set up edge-runtime@ID.service (/etc/edge-runtime/ID.env, ID/components)
#   --with-mosquitto   install mosquitto from the distribution and listen on 127.0.0.1:1883
#   --no-enable        install only; do not enable or start the unit
#   --uninstall        stop and remove the units, the virtualenv and our udev rule; keeps the
#                      data (/var/lib/edge-runtime) and settings (/etc/edge-runtime)
#   --purge            with --uninstall: remove data, settings, the user, and the gpio group
#                      if this script created it
#
# Idempotent: running it again upgrades the package and the units and keeps settings and data.
# What it does: a virtualenv in /opt/edge-runtime/venv; a system user `edge-runtime` in the
# groups gpio and dialout; the `gpio` group and a udev rule giving it /dev/gpiochip* when the OS
# has neither (plain Debian: without the group, SupplementaryGroups=gpio fails the unit);
# /etc/edge-runtime/{edge-runtime.env,components/}; the units in /etc/systemd/system.
set -eu

PREFIX=/opt/edge-runtime
CONF=/etc/edge-runtime
DATA=/var/lib/edge-runtime
UNITS=/etc/systemd/system
USER_NAME=edge-runtime
UDEV_RULE=/etc/udev/rules.d/60-edge-runtime-gpio.rules
MARK="# written by edge-runtime install.sh"
HERE="$(cd "$(dirname "$0")" && pwd)"
TREE="$(cd "$HERE/../.." && pwd)"   # README.md, components/ and examples/ come from here
SOURCE="$TREE"
APP_ID=edge-app
INSTANCE=""
MOSQUITTO=0
ENABLE=1
UNINSTALL=0
PURGE=0

while [ $# -gt 0 ]; do
  case "$1" in
    --source) SOURCE="$2"; shift 2 ;;
    --app-id) APP_ID="$2"; shift 2 ;;
    --instance) INSTANCE="$2"; shift 2 ;;
    --with-mosquitto) MOSQUITTO=1; shift ;;
    --no-enable) ENABLE=0; shift ;;
    --uninstall) UNINSTALL=1; shift ;;
    --purge) PURGE=1; shift ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

say() { echo "install.sh: $*"; }
die() { echo "install.sh: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (sudo $0 ...)"

# systemd is the init here (not a chroot or a container without it): start and stop units.
systemd_running() { [ -d /run/systemd/system ]; }

apt_install() {
  command -v apt-get >/dev/null 2>&1 || die "cannot install $* (no apt-get): install it and rerun"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null ||
    { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null; }
}

# ------------------------------------------------------------------------------ uninstall
if [ "$UNINSTALL" = 1 ]; then
  units="edge-runtime.service"
  for link in /etc/systemd/system/*.wants/edge-runtime@*.service; do
    [ -e "$link" ] || [ -L "$link" ] && units="$units $(basename "$link")"
  done
  if command -v systemctl >/dev/null 2>&1; then
    if systemd_running; then
      # shellcheck disable=SC2086 # a list of unit names
      systemctl disable --now $units >/dev/null 2>&1 || true
    else
      # shellcheck disable=SC2086
      systemctl disable $units >/dev/null 2>&1 || true
    fi
  fi
  rm -f "$UNITS/edge-runtime.service" "$UNITS/edge-runtime@.service"
  systemd_running && systemctl daemon-reload
  rm -rf "$PREFIX"
  if [ -f "$UDEV_RULE" ] && grep -qF "$MARK" "$UDEV_RULE"; then
    rm -f "$UDEV_RULE"
    if command -v udevadm >/dev/null 2>&1; then udevadm control --reload >/dev/null 2>&1 || true; fi
  fi
  rm -f /etc/mosquitto/conf.d/edge-runtime.conf
  if [ "$PURGE" = 1 ]; then
    getent passwd "$USER_NAME" >/dev/null && userdel "$USER_NAME"
    getent group "$USER_NAME" >/dev/null && groupdel "$USER_NAME"
    if [ -f "$CONF/.created-gpio-group" ] && getent group gpio >/dev/null; then
      groupdel gpio
    fi
    rm -rf "$CONF" "$DATA"
    say "removed edge-runtime, its settings and its data"
  else
    say "removed edge-runtime; kept $CONF and $DATA (--purge removes them)"
  fi
  exit 0
fi

# ------------------------------------------------------------------------------ python
python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null ||
  die "edge-runtime needs Python 3.11 or newer as python3 (Debian 12 / Raspberry Pi OS bookworm)"
python3 -c 'import ensurepip, venv' 2>/dev/null || { say "installing python3-venv"; apt_install python3-venv; }

# ------------------------------------------------------------------------------ gpio group, udev
if ! getent group gpio >/dev/null; then
  groupadd --system gpio
  mkdir -p "$CONF"
  touch "$CONF/.created-gpio-group"
  say "created the gpio group (this OS has none)"
fi
has_gpio_rule() {
  for dir in /etc/udev/rules.d /run/udev/rules.d /lib/udev/rules.d /usr/lib/udev/rules.d; do
    [ -d "$dir" ] || continue
    grep -lsE 'gpiochip.*GROUP="?gpio|GROUP="?gpio.*gpiochip' "$dir"/*.rules 2>/dev/null |
      grep -v "^$UDEV_RULE\$" >/dev/null && return 0
  done
  return 1
}
if has_gpio_rule; then
  # The OS gives the gpio group its chips (Raspberry Pi OS): ours would only duplicate it.
  if [ -f "$UDEV_RULE" ] && grep -qF "$MARK" "$UDEV_RULE"; then rm -f "$UDEV_RULE"; fi
elif [ ! -f "$UDEV_RULE" ]; then
  mkdir -p "$(dirname "$UDEV_RULE")"
  cat > "$UDEV_RULE" <<EOF
$MARK: members of gpio may use the GPIO character devices.
SUBSYSTEM=="gpio", KERNEL=="gpiochip*", GROUP="gpio", MODE="0660"
EOF
  if command -v udevadm >/dev/null 2>&1 && [ -d /run/udev ]; then
    udevadm control --reload >/dev/null 2>&1 || true
    udevadm trigger --subsystem-match=gpio >/dev/null 2>&1 || true
  fi
  say "added $UDEV_RULE"
fi

# ------------------------------------------------------------------------------ user
if ! getent passwd "$USER_NAME" >/dev/null; then
  useradd --system --user-group --home-dir "$DATA" --no-create-home \
    --shell /usr/sbin/nologin --comment "edge-runtime sidecar" "$USER_NAME"
  say "created the system user $USER_NAME"
fi
getent group dialout >/dev/null || groupadd --system dialout
usermod -a -G gpio,dialout "$USER_NAME"

# ------------------------------------------------------------------------------ virtualenv
[ -x "$PREFIX/venv/bin/python" ] || python3 -m venv "$PREFIX/venv"
"$PREFIX/venv/bin/python" -m pip install -q --upgrade "$SOURCE"
"$PREFIX/venv/bin/edge-runtime" --version >/dev/null || die "the installed edge-runtime does not run"
cp "$TREE/README.md" "$PREFIX/README.md" 2>/dev/null || true
if [ -d "$TREE/examples" ]; then
  rm -rf "$PREFIX/examples"
  cp -r "$TREE/examples" "$PREFIX/examples"
fi
say "installed $("$PREFIX/venv/bin/edge-runtime" --version) in $PREFIX/venv"

# ------------------------------------------------------------------------------ settings
components_from="$TREE/components"
write_settings() {  # $1: env file, $2: components folder, $3: app id (empty: the template's %i)
  if [ ! -f "$1" ]; then
    {
      echo "# edge-runtime settings (see README, \"systemd\"). Kept by install.sh on upgrade."
      [ -n "$3" ] && echo "APP_ID=$3"
      echo "# More flags, e.g. EDGE_RUNTIME_ARGS=--log-as-json --dapr-http-port 3500"
      [ -z "$3" ] && echo "EDGE_RUNTIME_ARGS=--dapr-http-port 0 --dapr-grpc-port 0 --metrics-port 0"
      echo "# The app the sidecar starts and stops, after --, e.g.:"
      echo "# EDGE_RUNTIME_APP=-- $PREFIX/venv/bin/python $PREFIX/examples/sensor/app.py"
    } > "$1"
    chmod 0640 "$1"
    chgrp "$USER_NAME" "$1"
  fi
  if [ ! -d "$2" ]; then
    mkdir -p "$2"
    if [ -d "$components_from" ]; then cp "$components_from"/*.yaml "$2"/; fi
    say "example components in $2"
  fi
}
mkdir -p "$CONF"
write_settings "$CONF/edge-runtime.env" "$CONF/components" "$APP_ID"
[ -n "$INSTANCE" ] && write_settings "$CONF/$INSTANCE.env" "$CONF/$INSTANCE/components" ""
chgrp -R "$USER_NAME" "$CONF"
chmod 0750 "$CONF"

# ------------------------------------------------------------------------------ mosquitto
if [ "$MOSQUITTO" = 1 ]; then
  command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] ||
    { say "installing mosquitto"; apt_install mosquitto; }
  if [ -d /etc/mosquitto/conf.d ] && [ ! -f /etc/mosquitto/conf.d/edge-runtime.conf ]; then
    cat > /etc/mosquitto/conf.d/edge-runtime.conf <<EOF
$MARK: a local broker for the sidecar (README, "Broker settings").
listener 1883 127.0.0.1
allow_anonymous true
max_queued_messages 0
autosave_interval 30
EOF
  fi
  if [ "$ENABLE" = 1 ] && command -v systemctl >/dev/null 2>&1; then
    systemctl enable mosquitto.service >/dev/null 2>&1 || true
    systemd_running && systemctl restart mosquitto.service
  fi
fi

# ------------------------------------------------------------------------------ units
install -m 0644 "$HERE/edge-runtime.service" "$HERE/edge-runtime@.service" "$UNITS/"
units="edge-runtime.service"
[ -n "$INSTANCE" ] && units="$units edge-runtime@$INSTANCE.service"
if [ "$ENABLE" = 1 ] && command -v systemctl >/dev/null 2>&1; then
  if systemd_running; then
    systemctl daemon-reload
    # shellcheck disable=SC2086 # a list of unit names
    systemctl enable $units >/dev/null
    # shellcheck disable=SC2086
    systemctl restart $units
    say "enabled and started $units (journalctl -u edge-runtime -f)"
  else
    # shellcheck disable=SC2086
    systemctl enable $units >/dev/null 2>&1
    say "enabled $units; systemd is not running here, so nothing was started"
  fi
else
  say "units installed in $UNITS; enable with: systemctl enable --now $units"
fi
