# chatmesh: `make run` starts the local cluster from cluster.conf; `make test` runs every test.
# Both install what they need (as root, with apt-get) on a fresh Debian machine.

SWIFT ?= swift
BIN := .build/debug/chatmesh
PYTEST := .venv/bin/pytest

.PHONY: all build run test unit-test integration-test browser-test build-deps test-deps clean

all: build

build-deps:
	@scripts/install-build-deps.sh

test-deps:
	@scripts/install-test-deps.sh

build: build-deps
	$(SWIFT) build

run: build
	@scripts/run-local.sh cluster.conf

# Unit tests first (fast, byte-level), then the real-server suites with real clients.
test: build test-deps
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build
	$(PYTEST) -q -p no:cacheprovider tests/integration tests/browser

unit-test: build
	$(SWIFT) test

integration-test: build test-deps
	$(PYTEST) -q -p no:cacheprovider tests/integration

browser-test: build test-deps
	$(PYTEST) -q -p no:cacheprovider tests/browser

clean:
	rm -rf .build .venv
