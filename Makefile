# chatmesh: `make run` starts the local cluster from cluster.conf; `make test` runs every test.
# Both install what they need (as root, with apt-get) on a fresh Debian machine.

SWIFT ?= swift
BIN := .build/debug/chatmesh
PYTEST := .venv/bin/pytest

.PHONY: all build build-tests run test unit-test integration-test browser-test build-deps test-deps clean install bench fuzz

all: build

build-deps:
	@scripts/install-build-deps.sh

test-deps:
	@scripts/install-test-deps.sh

build: build-deps
	$(SWIFT) build

# Starts every node of cluster.conf on this host (one process each) and prints each page URL.
run: build
	@echo "Starting the nodes of cluster.conf; open a chat page below in two tabs. Ctrl-C stops them."
	@$(BIN) cluster --config cluster.conf

# Unit tests first (fast, byte-level), then the real-server suites with real clients. The Swift
# build (products and tests in one go) and the test dependencies (apt, venv) run side by side.
test: build-deps
	@$(MAKE) --no-print-directory -j2 build-tests test-deps
	$(SWIFT) test --skip-build
	$(PYTEST) -q -p no:cacheprovider tests/integration tests/browser

build-tests:
	$(SWIFT) build --build-tests

unit-test: build
	$(SWIFT) test

integration-test: build test-deps
	$(PYTEST) -q -p no:cacheprovider tests/integration

browser-test: build test-deps
	$(PYTEST) -q -p no:cacheprovider tests/browser

# Scenario F against chatmesh mesh mode, redis mode and the kernel floor (../shared/bench/floor.c),
# in one run, on free loopback ports (~8 min on 2 cores): figures beside the floor's, and
# bench/results/latest.json. Not part of `make test`. BENCH_ARGS=--quick for a short smoke run.
bench: build-deps
	$(SWIFT) build -c release
	python3 bench/run.py $(BENCH_ARGS)

# libFuzzer over every decoder (Fuzz/: one target each), FUZZ_SECONDS per target (~10 min at the
# default 60), after a sanitizer build into .build-fuzz. Not part of `make test`. Fails if any
# target crashes; the input is kept in Fuzz/crashes/<target>/. FUZZ_TARGETS=FuzzRESP for one.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?=
fuzz: build-deps
	SWIFT=$(SWIFT) Fuzz/run.sh $(FUZZ_SECONDS) $(FUZZ_TARGETS)

clean:
	rm -rf .build .venv

# `make install` (root): the binary to $(PREFIX)/bin, the systemd units to /etc/systemd/system,
# /etc/chatmesh/cluster.conf (kept if it exists; root-only, it holds the mesh secret), and
# the socket units' addresses from it (scripts/install-systemd.sh). DESTDIR stages it all.
# Installs $(INSTALL_BIN) as it is when it exists (run `swift build -c release` to refresh it).
PREFIX ?= /usr/local
INSTALL_BIN ?= .build/release/chatmesh
install:
	@test -x $(INSTALL_BIN) || { scripts/install-build-deps.sh && $(SWIFT) build -c release; }
	install -D -m 0755 $(INSTALL_BIN) $(DESTDIR)$(PREFIX)/bin/chatmesh
	install -d -m 0755 $(DESTDIR)/etc/systemd/system
	for unit in deploy/systemd/*; do \
		sed 's|/usr/local/bin/chatmesh|$(PREFIX)/bin/chatmesh|' $$unit > $(DESTDIR)/etc/systemd/system/$${unit##*/} && \
		chmod 0644 $(DESTDIR)/etc/systemd/system/$${unit##*/} || exit 1; \
	done
	install -d -m 0755 $(DESTDIR)/etc/chatmesh
	@if [ -e $(DESTDIR)/etc/chatmesh/cluster.conf ]; then \
		echo "keeping the existing $(DESTDIR)/etc/chatmesh/cluster.conf"; \
	else \
		install -m 0600 cluster.conf $(DESTDIR)/etc/chatmesh/cluster.conf && \
		echo "installed $(DESTDIR)/etc/chatmesh/cluster.conf: list your nodes and set [cluster] secret there"; \
	fi
	CHATMESH_BIN=$(DESTDIR)$(PREFIX)/bin/chatmesh scripts/install-systemd.sh $(DESTDIR)/etc/chatmesh/cluster.conf $(DESTDIR)
