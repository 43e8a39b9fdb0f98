#!/bin/sh
# Inside a Debian booted with systemd as PID 1 (deploy/systemd/test-systemd.sh): the README's
# "Under systemd" walk-through, checked step by step. Usage: walkthrough.sh WHEEL
#
#  1. install.sh --with-mosquitto (pip from the wheelhouse in $PIP_FIND_LINKS, no index)
#  2. edge-runtime.service is active: Type=notify, so only after the sidecar sent READY=1;
#     the API answers /v1.0/healthz/outbound 204 and the metadata carries the app id; a state
#     save and get work through the store in StateDirectory
#  3. the watchdog: a drop-in sets WatchdogSec=4; the sidecar is SIGSTOPped; systemd must
#     kill it (watchdog timeout) and Restart=on-failure start a new one that reaches READY
#  4. systemctl stop: clean (Result=success, exit status 0, STOPPING before the exit)
# Prints "walkthrough: PASSED" or "walkthrough: FAILED: why"; exits 0 or 1.
set -eu
WHEEL="$1"
UNIT=edge-runtime.service
T0=$(date +%s)

step() { echo "walkthrough: $(( $(date +%s) - T0 ))s $*"; }
fail() {
  echo "walkthrough: FAILED: $*"
  systemctl status --no-pager "$UNIT" 2>&1 | sed 's/^/  /' || true
  journalctl -u "$UNIT" --no-pager -n 40 2>&1 | sed 's/^/  /' || true
  exit 1
}
prop() { systemctl show -P "$1" "$UNIT"; }
wait_for() {  # $1: seconds, then a shell condition
  limit=$1; shift
  i=0
  while ! sh -c "$*"; do
    i=$((i + 1))
    [ "$i" -le $((limit * 5)) ] || return 1
    sleep 0.2
  done
}
http() {  # METHOD PATH [BODY]: prints "status body"
  python3 - "$@" <<'EOF'
import json, sys, urllib.error, urllib.request
method, path = sys.argv[1], sys.argv[2]
body = sys.argv[3].encode() if len(sys.argv) > 3 else None
port = json.load(open("/var/lib/edge-runtime/runtime.json"))["ports"]["http"]
req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method=method,
                             headers={"content-type": "application/json"})
try:
    with urllib.request.urlopen(req, timeout=30) as r:
        print(r.status, r.read().decode())
except urllib.error.HTTPError as e:
    print(e.code, e.read().decode())
EOF
}

[ "$(readlink /proc/1/exe)" = /usr/lib/systemd/systemd ] || [ "$(cat /proc/1/comm)" = systemd ] ||
  fail "PID 1 is $(cat /proc/1/comm), not systemd"
step "systemd $(systemctl --version | head -n1 | cut -d' ' -f2) is PID 1; system state: $(systemctl is-system-running || true)"

# 1. install ------------------------------------------------------------------------------
sh /src/deploy/systemd/install.sh --source "$WHEEL" --with-mosquitto --app-id walkthrough ||
  fail "install.sh exited $?"
step "install.sh done"

# 2. active = READY ------------------------------------------------------------------------
[ "$(prop Type)" = notify ] || fail "Type=$(prop Type)"
wait_for 120 "[ \"\$(systemctl is-active $UNIT)\" = active ]" ||
  fail "not active after 120 s: $(systemctl is-active $UNIT)"
step "is-active: active (Type=notify: READY=1 received; $(prop StatusText))"
[ "$(systemctl is-active mosquitto.service)" = active ] || fail "mosquitto is not active"
r="$(http GET /v1.0/healthz/outbound)"
[ "${r%% *}" = 204 ] || fail "healthz/outbound: $r"
meta="$(http GET /v1.0/metadata)"
echo "$meta" | grep -q '"id": *"walkthrough"' || fail "metadata: $meta"
r="$(http POST /v1.0/state/statestore '[{"key":"k","value":{"n":1}}]')"
[ "${r%% *}" = 204 ] || fail "state save: $r"
got="$(http GET /v1.0/state/statestore/k)"
[ "$got" = '200 {"n":1}' ] || [ "$got" = '200 {"n": 1}' ] || fail "state get: $got"
step "healthz/outbound 204, metadata id walkthrough, state save/get through /var/lib/edge-runtime"
user="$(ps -o user= -p "$(prop MainPID)")"
[ "$user" = edge-runtime ] || fail "runs as $user"
ls /var/lib/edge-runtime/*.db >/dev/null 2>&1 || fail "no database in StateDirectory"

# 3. watchdog ------------------------------------------------------------------------------
mkdir -p /etc/systemd/system/$UNIT.d
printf '[Service]\nWatchdogSec=4\n' > /etc/systemd/system/$UNIT.d/50-walkthrough-watchdog.conf
systemctl daemon-reload
systemctl restart "$UNIT"
[ "$(systemctl is-active $UNIT)" = active ] || fail "not active after the restart"
[ "$(prop WatchdogUSec)" = 4s ] || fail "WatchdogUSec=$(prop WatchdogUSec)"
sleep 6   # longer than WatchdogSec: the pings keep it alive
[ "$(systemctl is-active $UNIT)" = active ] || fail "the watchdog killed a healthy sidecar"
restarts=$(prop NRestarts)
pid=$(prop MainPID)
kill -STOP "$pid"
step "sidecar $pid SIGSTOPped (WatchdogSec=4, NRestarts=$restarts)"
wait_for 60 "[ \"\$(systemctl show -P NRestarts $UNIT)\" -gt $restarts ]" ||
  fail "no restart within 60 s of the SIGSTOP"
wait_for 120 "[ \"\$(systemctl is-active $UNIT)\" = active ]" || fail "not active again"
newpid=$(prop MainPID)
[ "$newpid" != "$pid" ] || fail "the same MainPID"
journalctl -u "$UNIT" --no-pager | grep -q "Watchdog timeout" ||
  fail "no 'Watchdog timeout' in the journal"
r="$(http GET /v1.0/healthz/outbound)"
[ "${r%% *}" = 204 ] || fail "healthz after the restart: $r"
got="$(http GET /v1.0/state/statestore/k)"
[ "$got" = '200 {"n":1}' ] || [ "$got" = '200 {"n": 1}' ] || fail "state after the restart: $got"
step "watchdog timeout -> killed -> restarted as $newpid (NRestarts=$(prop NRestarts)), READY, healthy, state kept"
rm /etc/systemd/system/$UNIT.d/50-walkthrough-watchdog.conf
systemctl daemon-reload

# 4. stop ----------------------------------------------------------------------------------
since="$(date '+%Y-%m-%d %H:%M:%S')"
t=$(date +%s)
systemctl stop "$UNIT"
[ "$(systemctl is-active $UNIT)" = inactive ] || fail "after stop: $(systemctl is-active $UNIT)"
[ "$(prop Result)" = success ] || fail "Result=$(prop Result)"
[ "$(prop ExecMainStatus)" = 0 ] || fail "exit status $(prop ExecMainStatus)"
if journalctl -u "$UNIT" --since "$since" --no-pager | grep -E "SIGKILL|timed out|Killing process"; then
  fail "the stop was not clean"
fi
step "systemctl stop: inactive, Result=success, exit status 0 in $(( $(date +%s) - t )) s"
step "the unit's warnings in the journal (the watchdog's expected; nothing from the sandbox):"
journalctl -u "$UNIT" -p warning -q --no-pager | tail -n 8 | sed 's/^/  /'
echo "walkthrough: PASSED in $(( $(date +%s) - T0 )) s"
