#!/usr/bin/env bash
# Installs what the integration and browser tests need, and nothing that is there already.
# Idempotent; run as root (by `make test`, by CI) on a fresh Debian machine or again later.
#   - Debian packages: python3, python3-venv (only if `python3 -m venv` cannot work),
#     chromium, chromium-driver, curl, redis-server, redis-tools, nginx, systemd, tcpdump.
#     `apt-get update` runs only if something is missing.
#   - .venv at the repository root with IntegrationTests/requirements.txt installed; pip is skipped
#     when the stamp in .venv matches the requirements' hash.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
req="$repo/IntegrationTests/requirements.txt"
venv="$repo/.venv"
stamp="$venv/.requirements.sha256"

log() { echo "install-test-deps: $*" >&2; }

missing=()
need_pkg() {
    # dpkg -s succeeds for packages that were removed but not purged; check the status line.
    if ! dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$1")
    fi
}

apt_install() {
    (($# > 0)) || return 0
    if [[ $(id -u) -ne 0 ]]; then
        log "need root to install: $*"
        exit 1
    fi
    log "apt-get install $*"
    export DEBIAN_FRONTEND=noninteractive
    # Wait for another apt/dpkg run (e.g. a concurrent installer) instead of failing.
    local lock=(-o DPkg::Lock::Timeout=600)
    local try
    for try in 1 2 3; do
        apt-get "${lock[@]}" update -qq && break
        ((try < 3)) || exit 1
        sleep 10
    done
    apt-get "${lock[@]}" install -y -qq --no-install-recommends "$@" >/dev/null
}

# A python3 on PATH (pyenv's or Debian's) is enough; install Debian's only when there is none.
if ! command -v python3 >/dev/null 2>&1; then
    need_pkg python3
fi
need_pkg curl
need_pkg chromium
need_pkg chromium-driver
# Real peers for the fanout and operations tests: Redis, nginx, systemd's own tools
# (systemd-analyze verify, systemd-socket-activate).
need_pkg redis-server
need_pkg redis-tools
need_pkg nginx
need_pkg systemd
# Packet captures of the mesh ports (test_mesh_tls.py: a say's text is not on the wire with TLS).
need_pkg tcpdump
# The TLS tests make their test CAs and bad certificates with the openssl CLI.
need_pkg openssl
apt_install "${missing[@]}"
missing=()

python=python3
# Debian's python3 has venv but not ensurepip unless python3-venv is installed; pyenv's has both.
if ! "$python" -c 'import venv, ensurepip' >/dev/null 2>&1; then
    need_pkg python3-venv
    apt_install "${missing[@]}"
    missing=()
    # python3-venv belongs to Debian's python3: use that one if the one on PATH still lacks it.
    if ! "$python" -c 'import venv, ensurepip' >/dev/null 2>&1; then
        python=/usr/bin/python3
        if [[ ! -x $python ]]; then
            apt_install python3 python3-venv
        fi
    fi
fi

# A venv whose interpreter is gone (a different machine, a removed pyenv version) is rebuilt.
if [[ -d $venv ]] && ! "$venv/bin/python" -c 'import sys' >/dev/null 2>&1; then
    log "removing broken $venv"
    rm -rf "$venv"
fi
if [[ ! -d $venv ]]; then
    log "creating $venv with $("$python" --version 2>&1)"
    "$python" -m venv "$venv"
fi

want="$(sha256sum "$req" | cut -d' ' -f1) $("$venv/bin/python" -c 'import sys; print(sys.version.split()[0])')"
if [[ -f $stamp && "$(cat "$stamp")" == "$want" ]]; then
    log "python packages up to date"
else
    log "pip install -r IntegrationTests/requirements.txt"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$req"
    echo "$want" >"$stamp"
fi
log "ok"
