#!/usr/bin/env bash
# Installs what building chatmesh needs beyond the Swift toolchain, and nothing that is there
# already; `apt-get update` runs only when something is missing. Run as root.
set -euo pipefail

log() { echo "install-build-deps: $*" >&2; }

if ! command -v swift >/dev/null 2>&1; then
    log "no 'swift' on PATH: install Swift 6.x (https://www.swift.org/install/linux/) and retry"
    exit 1
fi

missing=()
for pkg in curl pkg-config libsystemd-dev libssl-dev; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]} > 0)); then
    [[ $(id -u) -eq 0 ]] || { log "need root to install: ${missing[*]}"; exit 1; }
    log "apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=600 update -qq
    apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
