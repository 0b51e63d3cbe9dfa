#!/usr/bin/env bash
# `make run`: starts every node of cluster.conf whose listen address is on this host, prints
# each chat page URL, and stops them all on Ctrl-C or SIGTERM.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${CHATMESH_BIN:-$repo/.build/debug/chatmesh}"
config="${1:-$repo/cluster.conf}"

"$bin" check-config "$config" >/dev/null
mapfile -t nodes < <(awk '/^\[node /{gsub(/[\[\]]/,""); name=$2} /^listen *=/{ if (name != "") { print name " " $3; name="" } }' "$config")

pids=()
stop() { kill -TERM "${pids[@]}" 2>/dev/null || true; wait "${pids[@]}" 2>/dev/null || true; }
trap stop EXIT
trap 'exit 0' INT TERM

for entry in "${nodes[@]}"; do
    name=${entry%% *}
    address=${entry#* }
    "$bin" serve --config "$config" --node "$name" &
    pids+=($!)
    for _ in $(seq 1 100); do
        curl -fsS "http://$address/healthz" >/dev/null 2>&1 && break
        sleep 0.1
    done
    echo "chatmesh node $name: chat page at http://$address/"
done
echo "Open the page in two browser tabs, pick a room and a name, and chat. Ctrl-C stops."
wait "${pids[@]}"
