#!/usr/bin/env bash
# Gives the chatmesh socket units their addresses from cluster.conf.
#
#   scripts/install-systemd.sh [--all] CONFIG [DESTDIR]
#
# The templates in deploy/systemd/ carry no address (cluster.conf is the one place that
# names them). For every node of CONFIG whose `listen` address is on this host (every node
# with --all), this writes, under DESTDIR (default: the root):
#
#   /etc/systemd/system/chatmesh@NAME.socket.d/listen.conf       ListenStream= the listen address
#   /etc/systemd/system/chatmesh-mesh@NAME.socket.d/listen.conf  ListenStream= the mesh address
#   /etc/systemd/system/chatmesh@NAME.service.d/node.conf        the mesh socket (nodes that have
#                                                                one), TimeoutStopSec= above
#                                                                [cluster] drain_timeout, and
#                                                                LoadCredential= for the private
#                                                                files beside CONFIG
#
# The unit reads cluster.conf as a credential, and a relative path in it is relative to its
# directory; so every file the node needs that lies directly beside CONFIG (`secret_file =
# secret`, `tls_key = %n-key.pem`, ...) is passed as a credential of the same name, readable by
# the node's dynamic user alone while the files themselves stay root-only. Each selected
# node's TLS files are checked first (`check-config --node NAME`).
#
# and removes files it wrote earlier for nodes that are no longer selected. Rerun it after
# every change of cluster.conf. The config is read through `chatmesh check-config` (binary:
# $CHATMESH_BIN, else `chatmesh` on the PATH, else this repository's build), so an invalid
# file is refused with its file:line message and nothing is written.
set -euo pipefail

usage() { echo "usage: $0 [--all] CONFIG [DESTDIR]" >&2; exit 2; }
die() { echo "install-systemd: $*" >&2; exit 1; }

all=no
args=()
for arg in "$@"; do
    case "$arg" in
        --all) all=yes ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        -*) usage ;;
        *) args+=("$arg") ;;
    esac
done
((${#args[@]} >= 1 && ${#args[@]} <= 2)) || usage
config=${args[0]}
destdir=${args[1]:-}
destdir=${destdir%/}
unitdir="$destdir/etc/systemd/system"
marker="# written by chatmesh scripts/install-systemd.sh"
[[ -r "$config" ]] || die "cannot read $config"

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin=${CHATMESH_BIN:-}
if [[ -z "$bin" ]]; then
    for candidate in "$(command -v chatmesh || true)" "$repo/.build/release/chatmesh" "$repo/.build/debug/chatmesh"; do
        if [[ -n "$candidate" && -x "$candidate" ]]; then bin=$candidate; break; fi
    done
fi
[[ -n "$bin" && -x "$bin" ]] || die "no chatmesh binary (set CHATMESH_BIN, or run 'swift build' first)"

config_abs=$(realpath "$config")
summary=$("$bin" check-config --no-tls-files "$config_abs") || die "$config is not valid (see above); nothing written"
config_dir=$(dirname "$config_abs")
shown_dir=$config_dir
if [[ -n "$destdir" ]]; then
    destdir_abs=$(realpath -m "$destdir")
    [[ "$config_dir" == "$destdir_abs"/* ]] && shown_dir=${config_dir#"$destdir_abs"}
fi
# Paths of the summary that lie directly in CONFIG's directory (`%n` still unexpanded).
mapfile -t beside_config < <(grep -oE "$config_dir/[^ ,;/]+" <<<"$summary" | sort -u)

# The node lines of the summary: "  NAME  listen HOST:PORT[  mesh HOST:PORT]" after "nodes (N):".
mapfile -t nodes < <(awk '
    /^nodes \(/ { inside = 1; next }
    inside && /^  [^ ]/ && $2 == "listen" { print $1, $3, ($4 == "mesh" ? $5 : "-"); next }
    inside && /^    / { next }
    inside { inside = 0 }' <<<"$summary")
((${#nodes[@]} > 0)) || die "found no nodes in the check-config summary of $config"
drain_ms=$(awk '/^drain_timeout: [0-9]+ ms$/ { print $2 }' <<<"$summary")
[[ -n "$drain_ms" ]] || die "found no drain_timeout in the check-config summary of $config"
# Enough for the drain, the final flush and the event loops to stop, and never below the
# template's 20 s.
stop_timeout=$(( (drain_ms + 999) / 1000 + 10 ))
((stop_timeout >= 20)) || stop_timeout=20

# Addresses of this host, as getent prints them (canonical text), plus the wildcards.
local_addrs=" 0.0.0.0 :: "
if command -v ip >/dev/null 2>&1; then
    local_addrs+="$(ip -o addr show 2>/dev/null | awk '{ sub(/\/.*/, "", $4); printf "%s ", $4 }')"
elif command -v hostname >/dev/null 2>&1; then
    local_addrs+="$(hostname -I 2>/dev/null || true) "
fi

# host:port or [v6]:port -> host
host_of() { local a=$1; a=${a%:*}; a=${a#[}; echo "${a%]}"; }
port_of() { echo "${1##*:}"; }

# The addresses HOST stands for (itself for a literal; resolved for a name), one a line.
addresses_of() {
    getent ahosts "$1" 2>/dev/null | awk '$2 == "STREAM" && !seen[$1]++ { print $1 }'
}

is_local() {
    case "$1" in 127.*|::1) return 0 ;; esac
    [[ "$local_addrs" == *" $1 "* ]]
}

# The ListenStream= value for host:port: numeric (systemd does not resolve names), with
# brackets for IPv6. A name becomes the first of its addresses that is on this host (with
# --all: its first address).
listen_stream() {
    local address=$1 host port candidate first=""
    host=$(host_of "$address")
    port=$(port_of "$address")
    while read -r candidate; do
        [[ -n "$candidate" ]] || continue
        [[ -n "$first" ]] || first=$candidate
        if is_local "$candidate"; then first=$candidate; break; fi
    done < <(addresses_of "$host")
    [[ -n "$first" ]] || return 1
    if [[ "$first" == *:* ]]; then echo "[$first]:$port"; else echo "$first:$port"; fi
}

node_is_local() {
    local candidate
    while read -r candidate; do
        [[ -n "$candidate" ]] && is_local "$candidate" && return 0
    done < <(addresses_of "$(host_of "$1")")
    return 1
}

shown_config=$config
[[ -n "$destdir" && "$config" == "$destdir"/* ]] && shown_config=${config#"$destdir"}

write_file() { # path content
    local dir tmp
    dir=$(dirname "$1")
    mkdir -p "$dir"
    tmp=$(mktemp "$dir/.install-systemd.XXXXXX")
    printf '%s\n' "$2" >"$tmp"
    chmod 0644 "$tmp"
    mv -f "$tmp" "$1"
}

header="$marker from $shown_config;
# rerun it after editing that file instead of editing this one."

# LoadCredential= lines for node NAME: the files beside CONFIG that the summary names.
credentials_of() {
    local name=$1 path file
    for path in "${beside_config[@]}"; do
        file=$(basename "${path//%n/$name}")
        echo "LoadCredential=$file:$shown_dir/$file"
    done | sort -u
}

# Each selected node's TLS files, before anything is written.
for entry in "${nodes[@]}"; do
    read -r name listen mesh <<<"$entry"
    [[ $all == yes ]] || node_is_local "$listen" || continue
    "$bin" check-config --node "$name" "$config_abs" >/dev/null \
        || die "node $name: its files are not usable (see above); nothing written"
done

written=()
selected=()
for entry in "${nodes[@]}"; do
    read -r name listen mesh <<<"$entry"
    if [[ $all == no ]] && ! node_is_local "$listen"; then
        echo "node $name: skipped ($listen is not an address of this host; --all writes every node)"
        continue
    fi
    client_stream=$(listen_stream "$listen") || die "node $name: cannot resolve the listen address $listen"
    write_file "$unitdir/chatmesh@$name.socket.d/listen.conf" "$header
[Socket]
ListenStream=
ListenStream=$client_stream"
    written+=("$unitdir/chatmesh@$name.socket.d/listen.conf")
    service_conf="$header
[Service]
# above [cluster] drain_timeout = $drain_ms ms
TimeoutStopSec=$stop_timeout"
    if [[ "$mesh" != "-" ]]; then
        mesh_stream=$(listen_stream "$mesh") || die "node $name: cannot resolve the mesh address $mesh"
        write_file "$unitdir/chatmesh-mesh@$name.socket.d/listen.conf" "$header
[Socket]
ListenStream=
ListenStream=$mesh_stream"
        written+=("$unitdir/chatmesh-mesh@$name.socket.d/listen.conf")
        service_conf="$header
[Unit]
Requires=chatmesh-mesh@$name.socket
After=chatmesh-mesh@$name.socket

[Service]
Sockets=chatmesh-mesh@$name.socket
# above [cluster] drain_timeout = $drain_ms ms
TimeoutStopSec=$stop_timeout"
        echo "node $name: client $client_stream, mesh $mesh_stream"
        selected+=("$name:mesh")
    else
        echo "node $name: client $client_stream (no mesh address)"
        selected+=("$name")
    fi
    credentials=$(credentials_of "$name")
    if [[ -n "$credentials" ]]; then
        service_conf+="
# files beside cluster.conf, as credentials (relative paths in it resolve to them)
$credentials"
    fi
    write_file "$unitdir/chatmesh@$name.service.d/node.conf" "$service_conf"
    written+=("$unitdir/chatmesh@$name.service.d/node.conf")
done

# Files this script wrote before for nodes that are gone from the selection.
shopt -s nullglob
for old in "$unitdir"/chatmesh@*.socket.d/listen.conf "$unitdir"/chatmesh-mesh@*.socket.d/listen.conf \
           "$unitdir"/chatmesh@*.service.d/node.conf; do
    keep=no
    for w in "${written[@]}"; do [[ "$old" == "$w" ]] && keep=yes; done
    [[ $keep == yes ]] && continue
    head -n 1 "$old" | grep -qF "$marker" || continue
    rm -f "$old"
    rmdir "$(dirname "$old")" 2>/dev/null || true
    echo "removed $old (its node is no longer selected)"
done

if ((${#selected[@]} == 0)); then
    echo "no node of $config listens on this host; nothing to enable (--all writes every node)"
    exit 0
fi

if [[ -z "$destdir" && -d /run/systemd/system ]] && command -v systemctl >/dev/null 2>&1; then
    systemctl daemon-reload
    reloaded=yes
else
    reloaded=no
fi

echo
echo "Start the nodes of this host now and at every boot:"
[[ $reloaded == yes ]] || echo "  systemctl daemon-reload"
echo "  systemctl enable --now chatmesh.target"
for node in "${selected[@]}"; do
    name=${node%:mesh}
    units="chatmesh@$name.socket"
    [[ "$node" == *:mesh ]] && units+=" chatmesh-mesh@$name.socket"
    echo "  systemctl enable --now $units chatmesh@$name.service"
done
echo "Status and logs: systemctl status 'chatmesh@*'; journalctl -u 'chatmesh@*' -f"
