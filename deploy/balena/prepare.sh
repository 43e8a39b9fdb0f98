#!/bin/sh
# Assemble the balena release folder: this folder's compose file, Dockerfile.template and
# mosquitto/, the project's wheel in dist/, the example sensor app and its components.
#   deploy/balena/prepare.sh [OUT]        (default: build/balena; then balena push FLEET --source OUT)
set -eu
HERE="$(cd "$(dirname "$0")" && pwd)"
TREE="$(cd "$HERE/../.." && pwd)"
OUT="${1:-$TREE/build/balena}"
rm -rf "$OUT"
mkdir -p "$OUT/dist" "$OUT/components" "$OUT/examples"
cp "$HERE/docker-compose.yml" "$HERE/Dockerfile.template" "$OUT/"
cp -r "$HERE/mosquitto" "$OUT/mosquitto"
PY="${PYTHON:-python3}"
"$PY" -m pip wheel -q --no-deps -w "$OUT/dist" "$TREE" >/dev/null
cp -r "$TREE/examples/sensor" "$OUT/examples/sensor"
rm -rf "$OUT/examples/sensor/__pycache__"
cp "$TREE"/examples/sensor/components/*.yaml "$OUT/components/"
echo "prepare.sh: release folder ready: balena push <fleet> --source $OUT"
