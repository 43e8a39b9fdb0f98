# Two commands for a newcomer: `make run` and `make test`. Both set up what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
APP_ID ?= edge-app
HTTP_PORT ?= 3500
MOSQUITTO_PORT ?= 1883
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: faults run test lint typecheck unit bench bench-full system-deps test-tools venv clean test-arm \
  test-armv7 test-systemd

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "edge-runtime needs Python 3.11 or newer"; exit 1; }
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV) || { \
	  echo "python3 -m venv failed: installing python3-venv"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq python3-venv && $(PYTHON) -m venv $(VENV); }
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PIP) install -q -e '.[test]'
	touch $@

venv: $(VENV)/.installed

# mosquitto (pub/sub broker), socat (serial pty pairs in tests), qemu-system-x86 and cpio
# (the gpio-sim VM that runs bindings.gpio against a real kernel), iproute2's ip (the
# network namespaces of the mDNS tests), and chromium with chromium-driver (the fleet page's
# headless browser test), openssl (throwaway certificates), fuse3 (the power-cut filesystem)
# and faketime (clock jumps) of tests/faults, from Debian's packages.
system-deps:
	@missing=""; \
	for pair in mosquitto:mosquitto socat:socat qemu-system-x86:qemu-system-x86_64 cpio:cpio \
	  iproute2:ip chromium:chromium chromium-driver:chromedriver openssl:openssl fuse3:fusermount3 faketime:faketime; do \
	  pkg=$${pair%%:*}; tool=$${pair##*:}; \
	  command -v $$tool >/dev/null 2>&1 || [ -x /usr/sbin/$$tool ] || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) apt-get install -y -qq --no-install-recommends $$missing || \
	  echo "warning: could not install$$missing; tests that need them will be skipped"; \
	fi

run: venv system-deps
	@if ! (exec 3<>/dev/tcp/127.0.0.1/$(MOSQUITTO_PORT)) 2>/dev/null; then \
	  if command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ]; then \
	    echo "starting a local mosquitto on 127.0.0.1:$(MOSQUITTO_PORT)"; \
	    PATH="$$PATH:/usr/sbin" mosquitto -d -p $(MOSQUITTO_PORT); \
	  fi; \
	fi
	$(VENV)/bin/edge-runtime run --app-id $(APP_ID) --dapr-http-port $(HTTP_PORT) \
	  --resources-path components --data-dir .edge-runtime $(ARGS)

lint: $(VENV)/.installed-test
	$(VENV)/bin/ruff check .

typecheck: $(VENV)/.installed-test
	$(VENV)/bin/mypy

# Tools some deploy tests use (they skip, saying so, without them): shellcheck for the shell
# scripts, systemd-analyze for the unit files.
test-tools:
	@missing=""; command -v shellcheck >/dev/null 2>&1 || missing="$$missing shellcheck"; \
	command -v systemd-analyze >/dev/null 2>&1 || missing="$$missing systemd"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq $$missing || \
	  echo "warning: could not install$$missing; tests that need them will be skipped"; \
	fi

unit: $(VENV)/.installed-test system-deps test-tools
	PATH="$$PATH:/usr/sbin" $(VENV)/bin/pytest -q -m "not faults_long and not systemd_boot" \
	  $(PYTEST_ARGS)

test: lint typecheck unit

# The long fault scenarios of tests/faults (their short versions run in `make test`); each
# prints its counts (runs, messages, lost, duplicated). See docs/reliability.md.
faults: $(VENV)/.installed-test system-deps
	PATH="$$PATH:/usr/sbin" $(VENV)/bin/pytest -q -s -m faults_long tests/faults $(PYTEST_ARGS)

bench: $(VENV)/.installed-test
	@command -v wrk >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq wrk; }
	$(PY) -m bench.state_bench
	$(PY) -m bench.grpc_bench
	PATH="$$PATH:/usr/sbin" $(PY) -m bench.pubsub_bench
	PATH="$$PATH:/usr/sbin" $(PY) -m bench.latency_bench --rate 50
	PATH="$$PATH:/usr/sbin" $(PY) -m bench.latency_bench --rate 1000 --seconds 5
	PATH="$$PATH:/usr/sbin" $(PY) -m bench.wear_bench --windows 0,2 --repeat 2 --seconds 3
	$(PY) -m bench.startup_bench
	$(PY) -m bench.invoke_bench
	$(PY) -m bench.gpio_bench
	$(PY) -m bench.serial_bench
	$(PY) -m bench.cloud_bench
	PATH="$$PATH:/usr/sbin" $(PY) -m bench.memory_bench --window 20

# The long ones (docs/performance.md): the whole commit-window table, 1,000,000 messages
# through one sidecar, a 1,000,000-row backlog, idle memory over a 60 s window and 10 starts
# (with MALLOC_ARENA_MAX=2 too).
bench-full: $(VENV)/.installed-test
	PATH="$$PATH:/usr/sbin" $(PY) -m bench.wear_bench --windows 0,2,20,100 --durability full,normal --repeat 3
	PATH="$$PATH:/usr/sbin" $(PY) -m bench.steady_bench
	PATH="$$PATH:/usr/sbin" $(PY) -m bench.memory_bench --window 60 --starts 10 --arena-max 2

# The suite on emulated aarch64: a Debian arm64 rootfs (debootstrap + qemu-user-static, cached
# in .cache/arm64), our wheel and the test extra from aarch64 wheels, then pytest in the chroot
# and install.sh as a device would run it. Needs root. ARM_SUBSET=ci runs the subset .ci/run
# uses; ARM_ARGS=--no-uvloop runs without uvloop (as armv7 devices do). See README, "ARM".
# ARM_ARCH=armhf: 32-bit armv7 (Raspberry Pi OS 32-bit), cached in .cache/armhf.
ARM_SUBSET ?= full
ARM_ARCH ?= arm64
test-arm:
	$(SUDO) deploy/arm/test-arm.sh --arch $(ARM_ARCH) --subset $(ARM_SUBSET) --install-check $(ARM_ARGS)

# The ci subset on emulated armv7 (qemu-arm): no uvloop, httptools, gpiod or asyncpg there,
# cbor2's pure-Python build. Not in .ci/run (its time budget); a matrix entry of arm.yml.
test-armv7:
	$(SUDO) deploy/arm/test-arm.sh --arch armhf --subset ci --install-check $(ARM_ARGS)

# The README's systemd walk-through under a real systemd as PID 1 (systemd-nspawn --boot of a
# cached Debian amd64 rootfs): READY, health, a watchdog restart, a clean stop. Root; not in
# `make test` (minutes). Needs systemd-container and debootstrap.
test-systemd: $(VENV)/.installed-test
	@command -v systemd-nspawn >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && \
	  $(SUDO) apt-get install -y -qq systemd-container debootstrap zstd; }
	$(SUDO) PATH="$$PATH:/usr/sbin" $(VENV)/bin/pytest -q -s -m systemd_boot tests/deploy/test_systemd_boot.py

clean:
	rm -rf $(VENV) .edge-runtime .mypy_cache .ruff_cache .pytest_cache
