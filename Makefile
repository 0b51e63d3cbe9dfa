# chatmesh: `make run` starts the local cluster from cluster.conf; `make test` runs every test.
# Both install what they need (as root, with apt-get) on a fresh Debian machine.

SWIFT ?= swift
BIN := .build/debug/chatmesh
PYTEST := .venv/bin/pytest

.PHONY: all build build-tests run test unit-test integration-test browser-test build-deps test-deps clean install bench bench-scale scale-test fuzz fuzz-check \
	sanitize sanitize-address sanitize-thread asan-integration asan-integration-core asan-integration-security asan-integration-redis-cluster asan-faults asan-browser \
	tsan-build-and-unit tsan-build tsan-unit tsan-integration tsan-integration-a tsan-integration-b test-steps asan-unit

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

# Every test, under the sanitizers (`make sanitize`, overlapped to fit CI's time): the build of
# products and tests is AddressSanitizer-instrumented (our targets; Package.swift,
# CHATMESH_SANITIZE), side by side with the test dependencies (apt, venv); then, side by side,
# the unit tests and the real-server suites with real clients (integration in three parts,
# browser) while the ThreadSanitizer rebuild of the node takes only the CPU they leave idle
# (SCHED_IDLE); once it is built, its server suites and the network-namespace fault suite; last
# the Redis Cluster suites. Each
# integration suite runs once, under one sanitizer (ASAN_SKIP: the ThreadSanitizer ones are not
# run under ASan too), and the unit tests under ThreadSanitizer are `make sanitize-thread`'s:
# both sanitizers for everything would not fit CI's time. Any
# sanitizer report fails the step that caused it (scripts/sanitized.sh). Every step is recorded
# (scripts/test-stage.sh) and the summary printed last names the steps that failed and what in
# them (scripts/test-summary.sh): side by side, a failure can be pages above the end.
test: build-deps
	@rm -rf .build/test-logs
	@$(MAKE) --no-print-directory test-steps; status=$$?; scripts/test-summary.sh $(TEST_STEPS) || status=1; exit $$status

# Every step `make test` records (scripts/test-stage.sh), for the summary to name any not run.
TEST_STEPS := build-address fuzz-check asan-unit asan-integration-core asan-integration-security asan-browser \
	tsan-build tsan-integration-a tsan-integration-b asan-faults asan-integration-redis-cluster
test-steps:
	@$(MAKE) --no-print-directory -j2 build-tests test-deps SANITIZE=address
	@$(MAKE) --no-print-directory fuzz-check
	@mkdir -p $(dir $(ASAN_BIN)) && cp $(BIN) $(ASAN_BIN) && cp $(UNIT_BUNDLE) $(ASAN_UNIT)
	@$(MAKE) --no-print-directory -k -j$(TEST_JOBS) --output-sync=target asan-unit asan-integration-core asan-integration-security \
		asan-browser tsan-integration-a tsan-integration-b asan-integration-redis-cluster asan-faults TSAN_NICE="chrt --idle 0" \
		FAULTS_AFTER=tsan-build REDIS_CLUSTER_AFTER="asan-integration-core asan-integration-security asan-browser tsan-build asan-faults" \
		ASAN_SKIP="$(TSAN_SUITES_A) $(TSAN_SUITES_B)"

build-tests:
	$(STAGE) build$(if $(SANITIZE),-$(SANITIZE)) $(if $(SANITIZE),$(SANITIZED) $(SANITIZE) )$(SWIFT) build --build-tests

# Sanitizers: CHATMESH_SANITIZE (Package.swift) instruments our targets only, in the same .build,
# so switching recompiles our modules (~2 min) and never the dependencies. `make test` runs both
# of these; a plain `make build` / `make run` afterwards recompiles our modules uninstrumented.
#   address: every suite (unit, integration, browser); LeakSanitizer off (scripts/sanitized.sh).
#   thread: in `make test`, the integration suites that keep
#   both event loops, the mesh, Redis and the bench client busy at once, since a race shows
#   only where two threads really touch the same memory (the recovery failover among them:
#   sessions on every loop hop to the recovery store's loop and back); `make sanitize-thread`
#   also runs the unit tests under it, but the seeded fuzz loops (single-threaded decoders on
#   random bytes: nothing for a race detector there, and ~90 s more).
SANITIZED := scripts/sanitized.sh
STAGE := scripts/test-stage.sh
# Steps run side by side in the last part of `make test`: the unit tests and four suites at
# once leave room for the ThreadSanitizer build, which only takes the CPU they leave idle.
TEST_JOBS ?= 6
ASAN_BIN := .build/sanitizer/chatmesh-address
# The unit tests (all swift-testing) run from a copy of their bundle, as `swift test` runs it:
# beside the suites, while `swift build` holds .build's lock for the ThreadSanitizer rebuild.
UNIT_BUNDLE := .build/debug/chatmeshPackageTests.xctest
ASAN_UNIT := .build/sanitizer/chatmeshPackageTests-address.xctest
asan-unit:
	$(STAGE) $@ $(SANITIZED) address $(ASAN_UNIT) --testing-library swift-testing
TSAN_SKIP := RESPFuzzTests|MeshFrameFuzzTests|RobustnessTests
TSAN_SUITES_A := IntegrationTests/integration/test_churn.py IntegrationTests/integration/test_transports.py IntegrationTests/integration/test_drain.py \
	IntegrationTests/integration/test_recovery_mesh_failover.py
TSAN_SUITES_B := IntegrationTests/integration/test_fanout_modes.py IntegrationTests/integration/test_mesh_cluster.py \
	IntegrationTests/integration/test_bench_counting.py

sanitize: sanitize-address sanitize-thread

sanitize-address: build-deps test-deps
	@$(MAKE) --no-print-directory build-tests SANITIZE=address
	@mkdir -p $(dir $(ASAN_BIN)) && cp $(BIN) $(ASAN_BIN) && cp $(UNIT_BUNDLE) $(ASAN_UNIT)
	@$(MAKE) --no-print-directory asan-unit asan-integration asan-browser

sanitize-thread: build-deps test-deps
	@$(MAKE) --no-print-directory tsan-unit tsan-integration

# The pieces. The ASan suites run the copy in $(ASAN_BIN): `make test` rebuilds .build/debug for
# ThreadSanitizer meanwhile.
asan-integration:
	CHATMESH_BIN=$(CURDIR)/$(ASAN_BIN) $(SANITIZED) address $(PYTEST) -q -p no:cacheprovider IntegrationTests/integration

# `make test` splits the integration suite: the network-namespace fault suite (~100 s, mostly
# waiting out its partitions) runs beside the ThreadSanitizer suites at the end, and the rest
# in two halves side by side (they wait on sockets, timers and child processes far more than
# they compute): the TLS, security, connection-defence, systemd, recovery and relay suites
# (the shorter half, so the recovery and relay suites go there; the relay ones take ~45 s
# unsanitized), and the others.
FAULT_SUITE := IntegrationTests/integration/test_faults_netns.py
SECURITY_SUITES := $(wildcard IntegrationTests/integration/test_*tls*.py IntegrationTests/integration/test_check_config_security.py \
	IntegrationTests/integration/test_connection_defences.py IntegrationTests/integration/test_systemd_*.py \
	IntegrationTests/integration/test_recovery*.py IntegrationTests/integration/test_relay*.py)
# The Redis Cluster suites (two real 6-process clusters) are a third part beside them.
REDIS_CLUSTER_SUITES := $(wildcard IntegrationTests/integration/test_redis_cluster*.py)
# In `make test` the suites that run under ThreadSanitizer (TSAN_SUITES_A/B) are left out of the
# ASan parts (ASAN_SKIP): each suite runs once, under one sanitizer, which is what fits CI's
# time. `make sanitize-address` runs them all under ASan too.
ASAN_SKIP ?=
asan-integration-core:
	CHATMESH_BIN=$(CURDIR)/$(ASAN_BIN) $(STAGE) $@ $(SANITIZED) address $(PYTEST) -q -p no:cacheprovider IntegrationTests/integration \
		--ignore=$(FAULT_SUITE) $(addprefix --ignore=,$(SECURITY_SUITES) $(REDIS_CLUSTER_SUITES) $(ASAN_SKIP))

# In `make test` (REDIS_CLUSTER_AFTER) it waits for the other ASan suites, the TSan build and
# the fault suite: beside four of them its delivery and failover bounds measured the starved
# machine, and twice beside the fault suite every receiver on one node stopped near 85 of 500
# says in test_sharded_three_senders_on_three_shards (cause not found yet; never alone).
asan-integration-redis-cluster: | $(REDIS_CLUSTER_AFTER)
	CHATMESH_BIN=$(CURDIR)/$(ASAN_BIN) $(STAGE) $@ $(SANITIZED) address $(PYTEST) -q -p no:cacheprovider $(REDIS_CLUSTER_SUITES)

asan-integration-security:
	CHATMESH_BIN=$(CURDIR)/$(ASAN_BIN) $(STAGE) $@ $(SANITIZED) address $(PYTEST) -q -p no:cacheprovider \
		$(filter-out $(ASAN_SKIP),$(SECURITY_SUITES))

# In `make test` the fault suite waits for the ThreadSanitizer build (FAULTS_AFTER), which ends
# when the other ASan suites leave the CPU: its latency bounds (a p99 within 2x while a client
# never reads) are for a node that is not starved by four other suites. (Its load generator
# runs at nice -5 beside the ThreadSanitizer suites; the whole suite at nice -5 starved them.)
asan-faults: | $(FAULTS_AFTER)
	CHATMESH_BIN=$(CURDIR)/$(ASAN_BIN) $(STAGE) $@ $(SANITIZED) address $(PYTEST) -q -p no:cacheprovider $(FAULT_SUITE)

asan-browser:
	CHATMESH_BIN=$(CURDIR)/$(ASAN_BIN) $(STAGE) $@ $(SANITIZED) address $(PYTEST) -q -p no:cacheprovider IntegrationTests/browser

tsan-build-and-unit: tsan-unit

# The node alone (what the ThreadSanitizer server suites run): building the test targets too
# would double this build, which is the longest part of `make test`.
tsan-build:
	$(TSAN_NICE) $(STAGE) $@ $(SANITIZED) thread $(SWIFT) build

tsan-unit:
	$(TSAN_NICE) $(STAGE) tsan-build-tests $(SANITIZED) thread $(SWIFT) build --build-tests
	$(TSAN_NICE) $(STAGE) $@ $(SANITIZED) thread $(SWIFT) test --skip-build --skip '$(TSAN_SKIP)'

# In two halves side by side: they wait on sockets and timers far more than they compute.
tsan-integration:
	@$(MAKE) --no-print-directory -j2 --output-sync=target tsan-integration-a tsan-integration-b

tsan-integration-a: tsan-build
	$(STAGE) $@ $(SANITIZED) thread $(PYTEST) -q -p no:cacheprovider $(TSAN_SUITES_A)

tsan-integration-b: tsan-build
	$(STAGE) $@ $(SANITIZED) thread $(PYTEST) -q -p no:cacheprovider $(TSAN_SUITES_B)

unit-test: build
	$(SWIFT) test

integration-test: build test-deps
	$(PYTEST) -q -p no:cacheprovider IntegrationTests/integration

browser-test: build test-deps
	$(PYTEST) -q -p no:cacheprovider IntegrationTests/browser

# Scenario F against chatmesh mesh mode, mesh mode with TLS, redis mode and the kernel floor
# (../shared/bench/floor.c), in one run, on free loopback ports (~10 min on 2 cores): figures beside
# the floor's (and mesh-tls beside plain mesh), and bench/results/latest.json. Not part of
# `make test`. BENCH_ARGS=--quick for a short smoke run; BENCH_ARGS="--targets mesh,mesh-tls".
bench: build-deps
	$(SWIFT) build -c release
	python3 bench/run.py $(BENCH_ARGS)

# The full mesh as it grows (bench/scale.py, docs/SCALE.md): 10, 25 and 50 nodes on this machine,
# one event loop each: time to full mesh, RSS per node and per link, idle (heartbeat) CPU, CPU
# per delivery with a room on 2, 10 and all N nodes, a restart and a SNAPSHOT storm with 10,000
# rooms (~3 min on 2 cores). Prints a table; bench/results/scale.json. Not part of `make test`.
# SCALE_ARGS="--nodes 10,25,50,100 --phases form,idle" for more or fewer nodes and phases.
bench-scale: build-deps
	$(SWIFT) build -c release
	python3 bench/scale.py $(SCALE_ARGS)

# The 50-node test (IntegrationTests/integration/test_mesh_scale.py with CHATMESH_FULL_SCALE=1):
# 10 and 50 nodes, one event loop each, form the full mesh (every link once) and pass the
# cross-node chat (join, say, quit) across nodes 1, 25 and 50, each say reaching only the nodes
# with members. On the release build: 50 debug processes on 2 cores miss handshake and
# heartbeat timeouts on a busy machine. ~15 s after the build. Not part of `make test`, which
# runs the 10-node case.
scale-test: build-deps test-deps
	$(SWIFT) build -c release
	CHATMESH_FULL_SCALE=1 CHATMESH_BIN=$(CURDIR)/.build/release/chatmesh $(PYTEST) -q -p no:cacheprovider IntegrationTests/integration/test_mesh_scale.py

# libFuzzer over every decoder (Fuzz/: one target each), FUZZ_SECONDS per target (~10 min at the
# default 60), after a sanitizer build into .build-fuzz. Not part of `make test`. Fails if any
# target crashes; the input is kept in Fuzz/crashes/<target>/. FUZZ_TARGETS=FuzzRESP for one.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?=
fuzz: build-deps
	SWIFT=$(SWIFT) Fuzz/run.sh $(FUZZ_SECONDS) $(FUZZ_TARGETS)

# Part of `make test`, right after its build: type-checks every fuzz target against the debug
# build's modules (plain or sanitized), so an API change that breaks one fails CI (~6 s, where
# building them for real takes minutes). Needs a `swift build --build-tests` before it; it does
# not start one itself, since `make test` builds with the sanitizer and a plain build here would
# undo that.
fuzz-check:
	$(STAGE) $@ scripts/check-fuzz-targets.sh

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
