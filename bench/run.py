#!/usr/bin/env python3
"""`make bench`: scenario F against chatmesh (mesh mode, 2 nodes), chatmesh (mesh mode with
`[mesh] tls = on`, 2 nodes), chatmesh (mesh mode with `[recovery] enabled = on`, 2 nodes),
chatmesh (redis mode, 2 nodes + redis-server), chatmesh (redis mode, sharded, 2 nodes + a Redis
Cluster of 3 primaries and 3 replicas) and the kernel floor (../shared/bench/floor.c), in one run,
on free loopback ports.

    python3 bench/run.py                 # everything (~12-14 min on 2 cores); needs a release build
    python3 bench/run.py --quick         # shorter windows, fewer rungs (a smoke run, ~3 min)
    python3 bench/run.py --systems mesh  # only some systems (floor, mesh, mesh-tls, mesh-recovery,
                                         # redis; ratios to the floor only when it is among them)
    python3 bench/run.py --quick --targets mesh,mesh-tls   # --targets is --systems' other name
    python3 bench/run.py --profile mesh-tls  # also `perf record -g` one node during the rate-50
                                             # window; the top of `perf report` is printed and kept
    python3 bench/run.py --recovery-memory   # only the memory of recovery: bytes per held session
                                             # and per kept message (fresh 2-node mesh, ~1 min)
    python3 bench/run.py --cluster-bytes     # only the Redis Cluster bytes per message, sharded vs
                                             # classic, on 3 and 4 shards (~1 min)

The redis-cluster column is the redis column's 2 nodes (--cluster-nodes N for more) on a Redis
Cluster (redis-server --cluster-enabled yes x 6, created with `redis-cli --cluster create
--cluster-replicas 1`, default cluster-node-timeout, no password as the redis column) with
`[redis] url = redis+cluster://<2 seeds>`, `mode = sharded`. Its CPU counts all 6 redis-servers;
it is printed with its ratio to single Redis (×redis). After it (unless --skip-cluster-bytes)
the bytes comparison (g) runs on fresh clusters of each --cluster-shards count
(3 chatmesh nodes, a member of every room on each): 3,000 says put into Redis as a node publishes
them (SPUBLISH to the room's primary, or PUBLISH to any node in classic mode); per message, the
bytes each node received from Redis (`ss -tinp` on its Redis links) and the cluster bus bytes
(`ss -ti` on the bus ports), idle traffic subtracted.

The mesh-tls column runs `chatmesh gen-certs --config <its cluster.conf> --out <dir>` and pastes
the [mesh] lines it prints into that cluster.conf: the operator's two commands. Its figures are
printed with their ratio to plain mesh (×mesh) beside the ×floor ratios.

The mesh-recovery column is the mesh column's cluster.conf plus `[recovery] enabled = on` (its
other keys at their defaults): every broadcast carries an offset, is kept in the room's history
on both nodes and forwarded to every peer. Its figures are printed with their ratio to plain
mesh (×mesh; the target is ≤ 1.15× CPU per delivery at rate 50), and it adds (f): the bytes the
recovery store holds at the end of the rate-50 window. Every sending run of the bench client
ends its sessions with `41` (explicit disconnect, as `socket.disconnect()`), so no run leaves
1,000 held sessions whose quits would be published, `max_disconnection` later, into another
run's window. `--recovery-memory` (also run after the mesh-recovery column, unless
--skip-recovery-memory) measures on fresh nodes: bytes per kept message (rooms filled to
`room_messages`) and bytes per held session (N idle clients dropped without `41`), both from the
`chatmesh_recovery_bytes_held` gauge and from RSS.

Scenario F: 1,000 clients, 10 rooms, 20 senders, 64-byte text. Figures:
  (a) server CPU per delivery (utime+stime of every server process, redis-server included, from
      /proc, sampled by the bench client exactly around its measured window) at rate 50 per
      sender and at rate 0 (as fast as possible) with window 8;
  (b) the highest rate of the ladder 25, 50, 100, 125, 200 per sender with p99 < 50 ms and no loss
      (the ladder stops at the first rung that fails);
  (c) latency p50 / p99 at rate 5;
  (d) RSS per connection with 10,000 idle WebSocket connections on one node (fresh processes);
  (e) inter-node bytes per message: mesh link bytes per PUB (/metrics), Redis bytes per PUBLISH
      (INFO stats / commandstats); for the mesh columns also the bytes on the wire (TCP payload of
      the mesh sockets, `ss -ti` bytes_sent), which include TLS's record overhead;
  (f) mesh-recovery only: recovery bytes held per node at the end of the rate-50 window
      (chatmesh_recovery_bytes_held), and the memory figures of --recovery-memory;
  (g) redis-cluster only: the sharded vs classic bytes comparison above (bytes each node receives
      from Redis, and cluster bus bytes, per message).
Every figure is printed beside the floor's, with the ratio to it; everything goes to
bench/results/latest.json. Every process is started and stopped here, by pid, also on failure.
"""

from __future__ import annotations

import argparse
import atexit
import datetime as dt
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The test harness starts and stops every process here as it does in the test suites (its
# process and node modules are plain Python: no test dependencies needed).
sys.path.insert(0, str(ROOT / "IntegrationTests"))

from harness.node import NodeProcess, config_text  # noqa: E402
from harness.process import free_ports, popen, stop_process, wait_port  # noqa: E402

LADDER = [25, 50, 100, 125, 200]
P99_LIMIT_MS = 50.0
SCENARIO = {"clients": 1000, "rooms": 10, "senders": 20, "payload": 64}
IDLE_CONNECTIONS = 10_000
ROOM_PREFIX = "r"

PROCS: list[subprocess.Popen] = []   # everything we started, stopped by pid at exit
LOG_DIR = Path(tempfile.mkdtemp(prefix="chatmesh-bench-"))


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------------
# processes

def stop(proc: subprocess.Popen | None) -> None:
    stop_process(proc)


def stop_all() -> None:
    for proc in reversed(PROCS):
        stop(proc)
    PROCS.clear()


def on_signal(number, _frame):
    stop_all()
    sys.exit(128 + number)


def start(cmd: list[str], name: str, **kw) -> subprocess.Popen:
    out = open(LOG_DIR / f"{name}.log", "ab")
    proc = popen(cmd, stdin=subprocess.DEVNULL, stdout=kw.pop("stdout", out), stderr=out,
                 cwd=kw.pop("cwd", LOG_DIR), **kw)
    PROCS.append(proc)
    return proc


def log_tail(name: str, n: int = 30) -> str:
    try:
        lines = (LOG_DIR / f"{name}.log").read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-n:])


def wait_listening(port: int, proc: subprocess.Popen, name: str, timeout: float = 20.0) -> None:
    wait_port(proc, "127.0.0.1", port, name, lambda: log_tail(name), timeout, interval=0.05)


def http_get(port: int, path: str, timeout: float = 5.0) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
        return r.read().decode()


def cpu_times() -> list[int]:
    """The machine's /proc/stat cpu line: user nice system idle iowait irq softirq steal …"""
    return [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]


def steal_percent(before: list[int], after: list[int]) -> float | None:
    """Share of CPU time the hypervisor gave to others meanwhile (a noise gauge)."""
    delta = [b - a for a, b in zip(before, after)]
    total = sum(delta[:8])
    return round(100.0 * delta[7] / total, 1) if total > 0 and len(delta) > 7 else None


def calibrate() -> float:
    """Milliseconds for a fixed CPU-bound loop: a gauge of how fast this (shared, virtual)
    machine runs right now; it moves when a neighbour loads the host."""
    t = time.perf_counter()
    x = 0
    for i in range(1_000_000):
        x += i * i % 7
    return round((time.perf_counter() - t) * 1000, 1)


def proc_io(pid: int) -> dict:
    try:
        return {k: int(v) for k, v in (l.split(": ") for l in Path(f"/proc/{pid}/io").read_text().splitlines())}
    except (OSError, ValueError):
        return {}


def tcp_bytes_sent(ports: list[int]) -> dict:
    """Bytes sent (TCP payload: TLS records and all) over every established socket with one end on
    `ports`, both ends of each loopback connection counted, from `ss -ti`; and how many sockets."""
    match = " or ".join(f"sport = :{p} or dport = :{p}" for p in ports)
    out = subprocess.run(["ss", "-tinH", "state", "established", f"( {match} )"],
                         capture_output=True, text=True, timeout=10, check=True).stdout
    sent = [int(x) for x in re.findall(r"\bbytes_sent:(\d+)", out)]
    return {"bytes": sum(sent), "sockets": sum(1 for l in out.splitlines() if l.strip() and not l[0].isspace())}


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


# ------------------------------------------------------------------------------------------------
# the systems

class System:
    name = ""
    label = ""

    def __init__(self, args):
        self.args = args
        self.procs: list[subprocess.Popen] = []
        self.ports: list[int] = []

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def targets(self) -> str:
        return ",".join(f"127.0.0.1:{p}" for p in self.ports)

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        for p in self.procs:  # in start order: chatmesh nodes before the redis-server they use
            stop(p)
            if p in PROCS:
                PROCS.remove(p)
        self.procs = []

    def check_alive(self) -> None:
        for p in self.procs:
            if p.poll() is not None:
                raise RuntimeError(f"{self.name}: a server process ({p.args[0]}) exited with {p.returncode}")

    def counters(self) -> dict:
        return {}

    def idle_pid(self) -> int:
        return self.procs[0].pid


class Floor(System):
    name = "floor"
    label = "floor (C, 1 process)"

    def start(self) -> None:
        port = free_ports(1)[0]
        proc = start([str(self.args.floor_bin), str(port)], "floor")
        self.procs, self.ports = [proc], [port]
        wait_listening(port, proc, "floor")

    def counters(self) -> dict:
        """send()/writev() calls, from the floor's own stats line (SIGUSR1 → stderr)."""
        if not self.procs or self.procs[0].poll() is not None:
            return {}
        path = LOG_DIR / "floor.log"
        size = path.stat().st_size if path.exists() else 0
        os.kill(self.procs[0].pid, signal.SIGUSR1)
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            time.sleep(0.01)
            with open(path, "rb") as f:
                f.seek(size)
                m = re.search(rb"floor-stats .*?\bsends=(\d+)", f.read())
            if m:
                return {"write_syscalls": int(m.group(1))}
        return {}


class Chatmesh(System):
    """Two `chatmesh serve` nodes (and a redis-server in redis mode) from one cluster.conf; with
    `tls`, mesh links over TLS with the certificates `chatmesh gen-certs` makes for that file;
    with `recovery`, `[recovery] enabled = on` (every other recovery key at its default)."""

    node_count = 2

    def __init__(self, args, fanout: str, tls: bool = False, recovery: bool = False,
                 recovery_keys: dict | None = None):
        super().__init__(args)
        self.fanout = fanout
        self.tls = tls
        self.recovery = recovery
        self.recovery_keys = recovery_keys or {}
        self.name = fanout + ("-tls" if tls else "") + ("-recovery" if recovery else "")
        self.label = (f"chatmesh {fanout}{' + TLS' if tls else ''}{' + recovery' if recovery else ''} "
                      f"(2 nodes{' + redis' if fanout == 'redis' else ''})")
        self.redis_port = None
        self.redis_proc = None
        self.backend_procs: list[subprocess.Popen] = []   # redis-server(s): not chatmesh
        self.mesh_ports: list[int] = []
        self.mesh_section: dict[str, str] = {}
        self.nodes: list[NodeProcess] = []

    def thread_args(self) -> list[str]:
        return ["--threads", str(self.args.node_threads)] if self.args.node_threads else []

    def conf(self, nodes: list[NodeProcess]) -> str:
        sections = {"limits": {"say_rate": 1000000, "say_burst": 1000000,
                               "max_connections": IDLE_CONNECTIONS * 2}}
        if self.mesh_section:
            sections["mesh"] = self.mesh_section
        if self.recovery:
            sections["recovery"] = {"enabled": "on", **self.recovery_keys}
        return config_text(nodes, fanout=self.fanout, secret="bench-secret-0123456789",
                           redis=self.redis_section() if self.fanout == "redis" else None,
                           sections=sections, writer="bench/run.py")

    def redis_section(self) -> dict:
        return {"url": f"redis://127.0.0.1:{self.redis_port}/0"}

    def start_backend(self, port: int) -> None:
        """redis mode: one redis-server on `port` (no password, no persistence)."""
        self.redis_port = port
        self.redis_proc = start([self.args.redis_bin, "--port", str(self.redis_port), "--bind", "127.0.0.1",
                                 "--save", "", "--appendonly", "no", "--protected-mode", "no",
                                 "--maxclients", "1000"], "redis-server")
        self.backend_procs = [self.redis_proc]
        wait_listening(self.redis_port, self.redis_proc, "redis-server")

    @property
    def redis_ports(self) -> list[int]:
        """The client ports of every redis-server of this system (the nodes' Redis links)."""
        return [self.redis_port] if self.redis_port else []

    def gen_certs(self, conf: Path) -> dict[str, str]:
        """`chatmesh gen-certs` for this cluster.conf, as an operator would run it; returns the
        [mesh] keys it prints to paste (tls = on, tls_ca, tls_cert, tls_key)."""
        out_dir = LOG_DIR / f"certs-{self.name}"
        shutil.rmtree(out_dir, ignore_errors=True)
        r = subprocess.run([str(self.args.chatmesh), "gen-certs", "--config", str(conf), "--out", str(out_dir)],
                           capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise RuntimeError(f"{self.name}: gen-certs failed ({r.returncode}): {r.stderr.strip()}")
        keys: dict[str, str] = {}
        section = None
        for line in r.stdout.splitlines():
            line = line.strip()
            if line.startswith("[") and line.endswith("]"):
                section = line[1:-1].strip()
            elif section == "mesh" and "=" in line and not line.startswith("#"):
                k, v = line.split("=", 1)
                keys[k.strip()] = v.strip()
        if keys.get("tls") != "on" or not all(keys.get(k) for k in ("tls_ca", "tls_cert", "tls_key")):
            raise RuntimeError(f"{self.name}: gen-certs printed no usable [mesh] lines:\n{r.stdout}")
        return keys

    def start(self) -> None:
        k = self.node_count
        ports = free_ports(2 * k + 1)
        listen, mesh = ports[:k], ports[k:2 * k]
        self.procs = []
        self.backend_procs = []
        if self.fanout == "redis":
            self.start_backend(ports[2 * k])
        conf = LOG_DIR / f"cluster-{self.name}.conf"
        level = [] if os.environ.get("CHATMESH_LOG_LEVEL") else ["--log-level", "warning"]
        self.nodes = [NodeProcess(LOG_DIR, conf, f"a{i}", lp, mp, args=[*level, *self.thread_args()],
                                  log_name=f"{self.name}-a{i}")
                      for i, (lp, mp) in enumerate(zip(listen, mesh), 1)]
        self.mesh_ports = mesh
        self.mesh_section = {}
        conf.write_text(self.conf(self.nodes))
        if self.tls:  # certificates name the nodes of this very file (its addresses as IP SANs)
            self.mesh_section = self.gen_certs(conf)
            conf.write_text(self.conf(self.nodes))
        for node in self.nodes:
            node.binary = self.args.chatmesh
            node.spawn()
            PROCS.append(node.proc)
        self.procs = [n.proc for n in self.nodes] + self.backend_procs
        self.ports = listen
        for node in self.nodes:
            node.wait_healthy(20.0, interval=0.05)
        # Ready: in mesh mode both links up too.
        deadline = time.monotonic() + 20
        while True:
            try:
                bodies = [json.loads(http_get(p, "/healthz")) for p in listen]
                if self.fanout != "mesh" or all(b.get("mesh", {}).get("peers_up") for b in bodies):
                    break
            except (OSError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: nodes not ready:\n" +
                                   "\n".join(n.log_text(3000) for n in self.nodes))
            self.check_alive()
            time.sleep(0.1)

    def stop(self) -> None:
        super().stop()
        for p in self.backend_procs:  # started before a failed start: not in procs yet
            stop(p)
            if p in PROCS:
                PROCS.remove(p)
        self.backend_procs = []
        for node in self.nodes:  # already stopped by pid above: closes their log files
            node.stop()
        self.nodes = []

    def metrics(self, ports: list[int] | None = None) -> dict:
        """Sum of every sample over both nodes (or `ports`), keyed by name{labels}."""
        out: dict[str, float] = {}
        for port in self.ports if ports is None else ports:
            for line in http_get(port, "/metrics").splitlines():
                if not line or line.startswith("#"):
                    continue
                m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)', line)
                if not m:
                    continue
                name, labels, value = m.group(1), m.group(2) or "", m.group(3)
                try:
                    v = float(value)
                except ValueError:
                    continue
                direction = re.search(r'direction="(\w+)"', labels)
                key = name + (f"/{direction.group(1)}" if direction else "")
                out[key] = out.get(key, 0.0) + v
        return out

    def redis_info(self) -> dict:
        with socket.create_connection(("127.0.0.1", self.redis_port), timeout=5) as s:
            info = {}
            for section in ("stats", "commandstats"):
                s.sendall(f"INFO {section}\r\n".encode())
                buf = b""
                while b"\r\n" not in buf:
                    buf += s.recv(65536)
                header, rest = buf.split(b"\r\n", 1)
                n = int(header[1:])
                while len(rest) < n + 2:
                    rest += s.recv(65536)
                for line in rest[:n].decode().splitlines():
                    if ":" in line and not line.startswith("#"):
                        k, v = line.split(":", 1)
                        info[k] = v
            return info

    def counters(self) -> dict:
        # write()/writev() calls of the chatmesh nodes (syscw; includes event-loop wake-ups
        # and mesh/redis links, so a little more than the client writes).
        c = {"write_syscalls": sum(proc_io(p.pid).get("syscw", 0) for p in self.procs if p not in self.backend_procs)}
        if self.fanout == "mesh":
            m = self.metrics()
            c["mesh_bytes_out"] = m.get("chatmesh_mesh_bytes_total/out", 0)
            c["mesh_frames_out"] = m.get("chatmesh_mesh_frames_total/out", 0)
            c["mesh_pubs_forwarded"] = m.get("chatmesh_mesh_pubs_forwarded_total", 0)
            c["mesh_link_rejects"] = m.get("chatmesh_mesh_link_rejects_total", 0)
            if self.recovery:  # gauges (gauge_*): the value at the mark, not a difference
                c["gauge_recovery_bytes_held"] = m.get("chatmesh_recovery_bytes_held", 0)
                c["gauge_recovery_sessions_held"] = m.get("chatmesh_recovery_sessions_held", 0)
                c["recovery_attempts"] = m.get("chatmesh_recovery_attempts_total", 0)
            try:  # without ss (iproute2) the wire row stays empty; the other counters still count
                c["mesh_wire_bytes_out"] = tcp_bytes_sent(self.mesh_ports)["bytes"]
            except (OSError, subprocess.SubprocessError):
                pass
        else:
            info = self.redis_info()
            c["redis_net_in"] = int(info.get("total_net_input_bytes", 0))
            c["redis_net_out"] = int(info.get("total_net_output_bytes", 0))
            pub = re.search(r"calls=(\d+)", info.get("cmdstat_publish", ""))
            c["redis_publish_calls"] = int(pub.group(1)) if pub else 0
        return c


def resp_command(port: int, *args, timeout: float = 5.0):
    """One command to a redis-server (no AUTH: the bench's run without a password), its RESP2
    reply decoded: str for +, bytes for $, int for :, list for *; an error reply raises."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        out = b"*%d\r\n" % len(args)
        for a in args:
            b = str(a).encode()
            out += b"$%d\r\n%s\r\n" % (len(b), b)
        s.sendall(out)
        buf = bytearray()

        def line() -> bytes:
            while b"\r\n" not in buf:
                chunk = s.recv(65536)
                if not chunk:
                    raise ConnectionError("redis closed the connection")
                buf.extend(chunk)
            i = buf.index(b"\r\n")
            text = bytes(buf[:i])
            del buf[:i + 2]
            return text

        def value():
            head = line()
            t, rest = head[:1], head[1:]
            if t == b"+":
                return rest.decode()
            if t == b"-":
                raise RuntimeError(f"redis :{port}: {rest.decode()}")
            if t == b":":
                return int(rest)
            if t == b"$":
                n = int(rest)
                if n < 0:
                    return None
                while len(buf) < n + 2:
                    chunk = s.recv(65536)
                    if not chunk:
                        raise ConnectionError("redis closed the connection")
                    buf.extend(chunk)
                data = bytes(buf[:n])
                del buf[:n + 2]
                return data
            if t == b"*":
                n = int(rest)
                return None if n < 0 else [value() for _ in range(n)]
            raise RuntimeError(f"bad RESP line {head!r}")

        return value()


def info_fields(port: int, section: str) -> dict[str, str]:
    text = resp_command(port, "INFO", section).decode()
    return dict(l.split(":", 1) for l in text.splitlines() if ":" in l and not l.startswith("#"))


def command_calls(port: int, command: str) -> int:
    m = re.search(r"calls=(\d+)", info_fields(port, "commandstats").get(f"cmdstat_{command}", ""))
    return int(m.group(1)) if m else 0


def tcp_bytes_received_by_pid(dports: list[int]) -> dict[int, int]:
    """{pid: bytes received} over every established socket whose far end is one of `dports`
    (a chatmesh node's Redis links), from `ss -tinpH` (TCP payload, per socket)."""
    match = " or ".join(f"dport = :{p}" for p in dports)
    out = subprocess.run(["ss", "-tinpH", "state", "established", f"( {match} )"],
                         capture_output=True, text=True, timeout=10, check=True).stdout
    per: dict[int, int] = {}
    pid = None
    for l in out.splitlines():
        if l.strip() and not l[0].isspace():
            m = re.search(r"pid=(\d+)", l)
            pid = int(m.group(1)) if m else None
        m = re.search(r"\bbytes_received:(\d+)", l)
        if m and pid is not None:
            per[pid] = per.get(pid, 0) + int(m.group(1))
    return per


class RedisClusterBackend:
    """`shards` primaries with `replicas` replicas each (redis-server --cluster-enabled yes on free
    loopback ports, the cluster bus on ports of its own, no password, no persistence, each in a
    directory of its own), created with `redis-cli --cluster create ... --cluster-replicas N
    --cluster-yes`; ready once every node says cluster_state:ok and every replica is synced."""

    def __init__(self, args, shards: int, replicas: int, tag: str):
        self.args, self.shards, self.replicas, self.tag = args, shards, replicas, tag
        self.procs: list[subprocess.Popen] = []
        self.ports: list[int] = []
        self.bus_ports: list[int] = []

    def start(self, timeout: float = 60.0) -> list[subprocess.Popen]:
        n = self.shards * (1 + self.replicas)
        ports = free_ports(2 * n)
        self.ports, self.bus_ports = ports[:n], ports[n:]
        for i, (port, bus) in enumerate(zip(self.ports, self.bus_ports)):
            d = LOG_DIR / f"{self.tag}-redis-{i}"
            shutil.rmtree(d, ignore_errors=True)
            d.mkdir(parents=True)
            self.procs.append(start([self.args.redis_bin, "--port", str(port), "--bind", "127.0.0.1",
                                     "--cluster-enabled", "yes", "--cluster-port", str(bus),
                                     "--cluster-config-file", "nodes.conf", "--save", "", "--appendonly", "no",
                                     "--protected-mode", "no", "--maxclients", "1000",
                                     "--repl-diskless-sync-delay", "0", "--dir", str(d)],
                                    f"{self.tag}-redis-{i}", cwd=d))
        for i, (port, proc) in enumerate(zip(self.ports, self.procs)):
            wait_listening(port, proc, f"{self.tag}-redis-{i}")
        r = subprocess.run([self.args.redis_cli, "--cluster", "create",
                            *(f"127.0.0.1:{p}" for p in self.ports),
                            "--cluster-replicas", str(self.replicas), "--cluster-yes"],
                           capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
        if r.returncode != 0:
            raise RuntimeError(f"{self.tag}: redis-cli --cluster create failed:\n{r.stdout[-2000:]}{r.stderr}")
        deadline = time.monotonic() + timeout
        while (why := self.not_ready()) is not None:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.tag}: Redis Cluster not ready after {timeout} s: {why}")
            time.sleep(0.1)
        return self.procs

    def not_ready(self) -> str | None:
        for port in self.ports:
            try:
                ci = dict(l.split(":", 1) for l in resp_command(port, "CLUSTER", "INFO").decode().split()
                          if ":" in l)
                if ci.get("cluster_state") != "ok" or int(ci.get("cluster_known_nodes", 0)) != len(self.ports):
                    return f":{port} {ci.get('cluster_state')}, knows {ci.get('cluster_known_nodes')}"
                # redis-cli --cluster create returns before every node learned who replicates whom
                replicas = sum("slave" in l.split()[2].split(",")
                               for l in resp_command(port, "CLUSTER", "NODES").decode().splitlines())
                if replicas != self.shards * self.replicas:
                    return f":{port} sees {replicas} replicas"
                repl = info_fields(port, "replication")
                if repl.get("role") == "slave" and repl.get("master_link_status") != "up":
                    return f"replica :{port} not synced"
            except (OSError, RuntimeError, ValueError) as e:
                return f":{port} {e}"
        return None

    def calls(self, command: str) -> int:
        return sum(command_calls(p, command) for p in self.ports)

    def net_bytes(self) -> tuple[int, int]:
        infos = [info_fields(p, "stats") for p in self.ports]
        return (sum(int(i.get("total_net_input_bytes", 0)) for i in infos),
                sum(int(i.get("total_net_output_bytes", 0)) for i in infos))

    def bus_bytes(self) -> int:
        """Bytes sent over the cluster bus by every node (gossip, and the pub/sub messages Redis
        forwards to other nodes: to every node for PUBLISH, within the shard for SPUBLISH)."""
        return tcp_bytes_sent(self.bus_ports)["bytes"]


class ChatmeshRedisCluster(Chatmesh):
    """`nodes` chatmesh nodes in redis mode on a Redis Cluster of `shards` primaries + as many
    replicas: `[redis] url = redis+cluster://<two seeds>`, `mode = sharded|classic`."""

    def __init__(self, args, mode: str = "sharded", shards: int = 3, nodes: int = 2, name: str | None = None):
        super().__init__(args, "redis")
        self.mode, self.shards, self.node_count = mode, shards, nodes
        self.name = name or f"redis-cluster-{mode}-{shards}x2-{nodes}n"
        self.label = (f"chatmesh redis {mode} ({nodes} nodes + Redis Cluster: {shards} primaries, "
                      f"{shards} replicas)")
        self.backend: RedisClusterBackend | None = None

    def start_backend(self, port: int) -> None:
        self.backend = RedisClusterBackend(self.args, self.shards, 1, self.name)
        try:
            self.backend.start()
        finally:
            self.backend_procs = list(self.backend.procs)

    def redis_section(self) -> dict:
        seeds = ",".join(f"127.0.0.1:{p}" for p in self.backend.ports[:2])
        return {"url": f"redis+cluster://{seeds}", "mode": self.mode}

    @property
    def redis_ports(self) -> list[int]:
        return list(self.backend.ports) if self.backend else []

    def counters(self) -> dict:
        """Redis-side counters only at the bench's window marks (cheap: an overloaded node's /metrics
        could miss the mark); the bytes comparison adds the per-node and cluster-bus bytes."""
        c = {"write_syscalls": sum(proc_io(p.pid).get("syscw", 0) for p in self.procs if p not in self.backend_procs)}
        b = self.backend
        c["redis_publish_calls"] = b.calls("spublish" if self.mode == "sharded" else "publish")
        c["redis_net_in"], c["redis_net_out"] = b.net_bytes()
        return c

    def byte_counters(self) -> dict:
        c = self.counters()
        c.update(node_rx_counters(self))
        c["redis_bus_bytes"] = self.backend.bus_bytes()
        return c


def node_rx_counters(system: Chatmesh) -> dict:
    """Per chatmesh node: the bytes it received from Redis (all its Redis links; node_rx_<name>) and
    the messages it received from Redis (chatmesh_redis_received_total; node_msgs_<name>)."""
    try:
        per = tcp_bytes_received_by_pid(system.redis_ports)
    except (OSError, subprocess.SubprocessError):
        return {}
    out = {}
    for n in system.nodes:
        out[f"node_rx_{n.name}"] = per.get(n.proc.pid, 0)
        out[f"node_msgs_{n.name}"] = system.metrics([n.port]).get("chatmesh_redis_received_total", 0)
    return out


# ------------------------------------------------------------------------------------------------
# running the bench client

def bench(args, system: System, *, rate: float, window: int = 8, duration: float | None = None,
          label: str = "", profile: bool = False) -> dict:
    duration = duration or args.duration
    cmd = [str(args.chatmesh), "bench", "--json-only", "--targets", system.targets(),
           "--clients", str(SCENARIO["clients"]), "--rooms", str(SCENARIO["rooms"]),
           "--senders", str(SCENARIO["senders"]), "--payload", str(SCENARIO["payload"]),
           "--rate", str(rate), "--window", str(window), "--duration", str(duration),
           "--warmup", str(args.warmup), "--threads", str(args.client_threads),
           "--room-prefix", ROOM_PREFIX, "--connect-timeout", "15",
           "--server-pids", ",".join(str(p) for p in system.pids)]
    # Server counters (mesh /metrics, redis INFO) are sampled when the client says its measured
    # window opens and closes, so that joins, quits and warmup traffic stay out of them.
    marks: dict[str, dict] = {}
    errors: list[str] = []
    profiler = Profiler(system) if profile else None
    proc = popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=LOG_DIR)
    PROCS.append(proc)

    def watch_stderr():
        with open(LOG_DIR / "client.log", "ab") as logf:
            for raw in proc.stderr:
                logf.write(raw)
                line = raw.decode(errors="replace").strip()
                if line in ("# window open", "# window closed"):
                    try:
                        marks[line] = system.counters()
                    except Exception as e:  # noqa: BLE001 - reported with the run
                        errors.append(f"{line}: {e}")
                    if profiler and line == "# window open":
                        profiler.start()
                    elif profiler:
                        profiler.stop()

    speed_ms = calibrate()
    cpu_before = cpu_times()
    watcher = threading.Thread(target=watch_stderr, daemon=True)
    watcher.start()
    try:
        out = proc.stdout.read()
        proc.wait(timeout=duration + args.warmup + 120)
    except subprocess.TimeoutExpired:
        stop(proc)
        raise RuntimeError(f"bench client timed out ({label}):\n{log_tail('client')}")
    finally:
        watcher.join(timeout=10)
        stop(proc)
        if proc in PROCS:
            PROCS.remove(proc)
        if profiler:
            profiler.stop()
    lines = [l for l in out.decode().splitlines() if l.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"bench client failed ({label}, exit {proc.returncode}):\n{log_tail('client')}")
    result = json.loads(lines[-1])
    result["machine_steal_pct"] = steal_percent(cpu_before, cpu_times())
    result["calibration_loop_ms"] = speed_ms
    before, after = marks.get("# window open"), marks.get("# window closed")
    if before is not None and after is not None:
        result["server_counters"] = {k: after[k] if k.startswith("gauge_") else after[k] - before.get(k, 0)
                                     for k in after}
    if errors:
        result["counter_errors"] = errors
    if profiler:
        result["profile"] = profiler.report()
    system.check_alive()
    ok = sustainable(result)
    unjoined = result["connected"] - result["joined"]
    missing_joins = f"  ({unjoined} connected clients never got their own join echo)" if unjoined else ""
    log(f"  {system.name:8} {label:18} {result['deliveries_per_s']:>9.0f}/s  "
        f"p50 {result['latency_p50_ms']:7.2f}  p99 {result['latency_p99_ms']:7.2f} ms  "
        f"lost {result['lost']}  dup {result['duplicated']}  reord {result['reordered']}  "
        f"cpu {result.get('server_cpu_us_per_delivery', float('nan')):.2f} µs/deliv  "
        f"client {result['client_cpu_s']:.1f}s  steal {result['machine_steal_pct']}%  calib {speed_ms} ms"
        f"{'' if ok else '  (not sustainable)'}{missing_joins}")
    return result


class Profiler:
    """`perf record -g` of a system's first node over exactly the measured window (started and
    stopped on the bench client's window marks); `report()` keeps the top of
    `perf report --no-children` (self time per symbol)."""

    TOP = 25

    def __init__(self, system: System):
        self.system = system
        self.data = LOG_DIR / f"perf-{system.name}.data"
        self.proc: subprocess.Popen | None = None
        self.error: str | None = None

    def start(self) -> None:
        if self.proc is not None:
            return
        pid = self.system.procs[0].pid
        try:
            self.proc = start(["perf", "record", "-e", "cpu-clock", "-F", "999", "-g", "-p", str(pid),
                               "-o", str(self.data)], f"perf-{self.system.name}")
        except OSError as e:
            self.error = f"perf record: {e}"

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)  # perf writes its data file on SIGINT
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.error = "perf record did not stop"
        stop(self.proc)
        if self.proc in PROCS:
            PROCS.remove(self.proc)

    def report(self) -> dict:
        if self.error or not self.data.exists():
            return {"error": self.error or "no perf data (perf record did not start?)"}
        r = subprocess.run(["perf", "report", "-i", str(self.data), "--no-children", "--stdio", "-g", "none",
                            "--sort", "dso,symbol", "--percent-limit", "0.5"],
                           capture_output=True, text=True, timeout=300)
        text_path = LOG_DIR / f"perf-{self.system.name}.txt"
        text_path.write_text(r.stdout + r.stderr)
        # perf pads every column to the widest symbol: squeeze the spaces and the empty columns
        top = [re.sub(r"(\s+-)+$", "", re.sub(r"\s{2,}", "  ", l.strip()))
               for l in r.stdout.splitlines() if l.strip() and not l.lstrip().startswith("#")][:self.TOP]
        samples = re.search(r"# Samples: (\S+)", r.stdout)
        return {"data": str(self.data), "report": str(text_path), "samples": samples.group(1) if samples else None,
                "top_self": top}


def sustainable(r: dict) -> bool:
    return (r["lost"] == 0 and r["latency_p99_ms"] < P99_LIMIT_MS and r["connected"] == SCENARIO["clients"]
            and r["disconnects"] == 0 and r["error_events"] == 0)


def idle_rss(args, system: System) -> dict:
    """Fresh processes; RSS of one node before, and with N idle joined connections."""
    system.start()
    try:
        pid = system.idle_pid()
        time.sleep(1.5)
        before = rss_kib(pid)
        port = system.ports[0]
        cmd = [str(args.chatmesh), "bench", "--json-only", "--targets", f"127.0.0.1:{port}",
               "--idle", str(args.idle), "--connect-rate", "5000", "--threads", str(args.client_threads)]
        proc = start(cmd, "client-idle", stdout=subprocess.PIPE)
        try:
            line = proc.stdout.readline().decode()
            if not line.startswith("{"):
                raise RuntimeError(f"idle client: no ready line:\n{log_tail('client-idle')}")
            ready = json.loads(line)
            time.sleep(2.0)  # let the server settle (the floor trims its buffers after 1 s idle)
            after = rss_kib(pid)
            system.check_alive()
            os.kill(proc.pid, signal.SIGTERM)
            out, _ = proc.communicate(timeout=60)
            final = [l for l in out.decode().splitlines() if l.startswith("{")]
            report = json.loads(final[-1]) if final else {}
        finally:
            stop(proc)
            if proc in PROCS:
                PROCS.remove(proc)
        n = ready.get("joined", 0)
        per = (after - before) * 1024 / n if n else None
        log(f"  {system.name:8} idle {n} connections: RSS {before} KiB -> {after} KiB = "
            f"{per:.0f} B per connection" if per is not None else f"  {system.name}: no idle connections")
        return {"connections": n, "rss_before_kib": before, "rss_after_kib": after,
                "rss_per_connection_bytes": per, "client": report}
    finally:
        system.stop()


# ------------------------------------------------------------------------------------------------
# the memory of connection-state recovery

ROOM_MESSAGES = 1000  # [recovery] room_messages, set explicitly in the memory run's cluster.conf


def node_sample(system: Chatmesh) -> list[dict]:
    """Per node: RSS, mesh bytes sent and the recovery gauges (absent without recovery)."""
    out = []
    for proc, port in zip(system.procs, system.ports):
        m = system.metrics([port])
        out.append({"rss_kib": rss_kib(proc.pid),
                    "mesh_bytes_out": m.get("chatmesh_mesh_bytes_total/out"),
                    "bytes_held": m.get("chatmesh_recovery_bytes_held"),
                    "sessions_held": m.get("chatmesh_recovery_sessions_held")})
    return out


def per_node_delta(a: list[dict], b: list[dict], key: str, per: float, scale: float = 1.0) -> float:
    """Mean over the nodes of (b[key] - a[key]) × scale / per."""
    d = [y[key] - x[key] for x, y in zip(a, b) if x.get(key) is not None and y.get(key) is not None]
    if not d or not per:
        raise RuntimeError(f"no {key} figures to compare (is chatmesh_recovery_* in /metrics?)")
    return sum(d) / len(d) * scale / per


def fill_history(args, system: Chatmesh) -> dict:
    """20 clients, all senders, 10 rooms, rate 100 each for 12 s: every room gets far more than
    `room_messages` says, so every node keeps exactly rooms × room_messages of them. The run ends
    with `41` from every client (20 ended sessions: tombstones, a few KiB)."""
    rooms, senders = SCENARIO["rooms"], SCENARIO["senders"]
    cmd = [str(args.chatmesh), "bench", "--json-only", "--targets", system.targets(),
           "--clients", str(senders), "--rooms", str(rooms), "--senders", str(senders),
           "--payload", str(SCENARIO["payload"]), "--rate", "100", "--duration", "12", "--warmup", "0.5",
           "--threads", "1", "--room-prefix", "m", "--connect-timeout", "15"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=LOG_DIR)
    lines = [l for l in r.stdout.splitlines() if l.startswith("{")]
    if r.returncode != 0 or not lines:
        raise RuntimeError(f"history fill failed ({r.returncode}): {r.stderr[-2000:]}")
    result = json.loads(lines[-1])
    per_room = result["sent"] / rooms
    if per_room < ROOM_MESSAGES * 1.2:
        raise RuntimeError(f"history fill: only {per_room:.0f} says per room, not enough to fill {ROOM_MESSAGES}")
    result["messages_kept_per_node"] = rooms * ROOM_MESSAGES
    return result


def hold_sessions(args, system: Chatmesh, n: int) -> tuple[dict, list[dict]]:
    """N idle clients join (about 10 a room), then the client process is killed: the connections
    drop without `41`, and with recovery on every node holds N sessions. Returns the idle client's
    ready line and the per-node sample taken while they were connected."""
    cmd = [str(args.chatmesh), "bench", "--json-only", "--targets", system.targets(),
           "--idle", str(n), "--connect-rate", "5000", "--threads", str(args.client_threads),
           "--room-prefix", "h"]
    proc = start(cmd, f"client-hold-{system.name}", stdout=subprocess.PIPE)
    try:
        line = proc.stdout.readline().decode()
        if not line.startswith("{"):
            raise RuntimeError(f"hold client: no ready line:\n{log_tail(f'client-hold-{system.name}')}")
        ready = json.loads(line)
        time.sleep(2.0)
        live = node_sample(system)
        proc.kill()  # no 41, no close frame: the server sees the TCP connections end
        proc.wait(timeout=30)
    finally:
        stop(proc)
        if proc in PROCS:
            PROCS.remove(proc)
    return ready, live


def wait_held(system: Chatmesh, n: int, timeout: float = 30.0) -> None:
    """Until every node reports n held sessions (each node holds every session's record)."""
    deadline = time.monotonic() + timeout
    while True:
        held = [s["sessions_held"] for s in node_sample(system)]
        if all(h is not None and h >= n for h in held):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{system.name}: sessions held per node {held}, expected {n}")
        system.check_alive()
        time.sleep(0.25)


def recovery_memory(args) -> dict:
    """Memory of recovery on a fresh 2-node mesh (and, as the baseline for RSS, the same steps
    on a fresh plain mesh):

    - per kept message: fill every room to `room_messages`; Δ bytes_held gauge and Δ RSS per node
      over the messages each node keeps (every node keeps every room), RSS minus plain mesh's
      growth over the same fill (what the traffic alone leaves behind);
    - per held session: N idle clients join and are dropped without `41`; Δ gauge (the store's
      own estimate: record + its join broadcast, kept in the room's history) and Δ RSS per node,
      from before the clients to 3 s after they dropped, minus the same Δ RSS on plain mesh (the
      memory the allocator keeps from N closed connections, which is no cost of recovery).
    """
    n = args.idle
    out: dict = {"sessions": n, "room_messages": ROOM_MESSAGES}
    for recovery in (True, False):
        system = Chatmesh(args, "mesh", recovery=recovery,
                          recovery_keys={"room_messages": ROOM_MESSAGES} if recovery else None)
        key = system.name
        log(f"== memory: {system.label}")
        system.start()
        try:
            time.sleep(1.5)
            base = node_sample(system)
            step: dict = {"base": base}
            # Both systems run the same fill, so that their allocators start the session step
            # from the same history (freed buffers of the fill are reused by later connections).
            step["fill"] = fill_history(args, system)
            time.sleep(2.0)
            filled = node_sample(system)
            step["filled"] = filled
            step["rss_growth_fill_bytes"] = per_node_delta(base, filled, "rss_kib", 1, 1024)
            if recovery:
                kept = step["fill"]["messages_kept_per_node"]
                step["bytes_held_per_kept_message"] = per_node_delta(base, filled, "bytes_held", kept)
                log(f"  {key}: {kept} messages kept per node: gauge {step['bytes_held_per_kept_message']:.0f} B "
                    f"per kept message; RSS grew {step['rss_growth_fill_bytes'] / 1024:.0f} KiB per node")
            before = node_sample(system)
            ready, live = hold_sessions(args, system, n)
            joined = ready.get("joined", 0)
            if joined != n:
                log(f"  {key}: only {joined} of {n} idle clients joined")
            if recovery:
                wait_held(system, joined)
            time.sleep(3.0)
            held = node_sample(system)
            step.update({"before_sessions": before, "live": live, "held": held, "joined": joined})
            step["rss_growth_per_dropped_session"] = per_node_delta(before, held, "rss_kib", joined, 1024)
            # both nodes' mesh bytes per session: its join broadcast, and with recovery its records
            step["mesh_bytes_per_session"] = per_node_delta(before, held, "mesh_bytes_out", joined, len(held))
            if recovery:
                step["bytes_held_per_held_session"] = per_node_delta(before, held, "bytes_held", joined)
            system.check_alive()
            out[key] = step
        finally:
            system.stop()
    rec, plain = out["mesh-recovery"], out["mesh"]
    kept = rec["fill"]["messages_kept_per_node"]
    rec["rss_bytes_per_kept_message"] = (rec["rss_growth_fill_bytes"] - plain["rss_growth_fill_bytes"]) / kept
    rec["rss_bytes_per_held_session"] = rec["rss_growth_per_dropped_session"] - plain["rss_growth_per_dropped_session"]
    rec["mesh_bytes_per_session_beyond_plain"] = rec["mesh_bytes_per_session"] - plain["mesh_bytes_per_session"]
    log(f"  memory: per kept message: gauge {rec['bytes_held_per_kept_message']:.0f} B, RSS "
        f"({rec['rss_growth_fill_bytes'] / 1024:.0f} - {plain['rss_growth_fill_bytes'] / 1024:.0f} KiB, plain mesh "
        f"after the same fill) / {kept} = {rec['rss_bytes_per_kept_message']:.0f} B per node")
    log(f"  memory: per held session: gauge {rec['bytes_held_per_held_session']:.0f} B, RSS "
        f"{rec['rss_growth_per_dropped_session']:.0f} B - {plain['rss_growth_per_dropped_session']:.0f} B "
        f"(plain mesh, same steps) = {rec['rss_bytes_per_held_session']:.0f} B per node; mesh bytes per session "
        f"(connect, join, drop; both nodes) {rec['mesh_bytes_per_session']:.0f} B, plain mesh "
        f"{plain['mesh_bytes_per_session']:.0f} B")
    return out


CLUSTER_BYTES_NODES = 3
CLUSTER_BYTES_MESSAGES = 3000
CLUSTER_IDLE_S = 3.0


def say_json(username: str, text: str) -> str:
    """The say as every node publishes it (docs/ORIGINAL-WIRE.md)."""
    return json.dumps({"event": "broadcast_say", "data": {"username": username, "text": text}},
                      separators=(",", ":"), ensure_ascii=False)


def publish_pipelined(port: int, commands: list[list[str]], batch: int = 200) -> None:
    """Sends `commands` to one redis-server, `batch` at a time, and reads every reply (an integer
    each; an error reply, such as MOVED, fails)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        pending = b""
        for k in range(0, len(commands), batch):
            chunk = commands[k:k + batch]
            out = bytearray()
            for args in chunk:
                out += b"*%d\r\n" % len(args)
                for a in args:
                    b = a.encode()
                    out += b"$%d\r\n%s\r\n" % (len(b), b)
            s.sendall(out)
            replies = 0
            while replies < len(chunk):
                while b"\r\n" not in pending:
                    data = s.recv(65536)
                    if not data:
                        raise ConnectionError(f"redis :{port} closed the connection")
                    pending += data
                line, pending = pending.split(b"\r\n", 1)
                if not line.startswith(b":"):
                    raise RuntimeError(f"redis :{port} answered {line[:200]!r}")
                replies += 1


def slot_owners(port: int) -> list[tuple[int, int, int]]:
    """(first slot, last slot, primary port) from CLUSTER SLOTS."""
    return [(int(row[0]), int(row[1]), int(row[2][1])) for row in resp_command(port, "CLUSTER", "SLOTS")]


def cluster_bytes(args) -> dict:
    """Bytes per message in sharded vs classic mode, at each shard count of --cluster-shards. Per run: a
    fresh Redis Cluster (N primaries + N replicas) and 3 chatmesh nodes; 30 idle clients of the bench
    (`chatmesh bench --idle`) join 10 rooms, one member per node in every room; then the bench puts
    3,000 says into the rooms straight into Redis, as a node would publish them (SPUBLISH to the
    room's primary in sharded mode, PUBLISH to one node in classic), and waits until every node has
    received all of them (chatmesh_redis_received_total). Per message: the bytes each node received on
    its Redis links (`ss -tinp`, TCP payload), and the bytes the Redis nodes sent each other on the
    cluster bus (`ss -ti` on the bus ports); both minus what the same system moved while idle for as
    long (gossip, pings). Exact whatever the machine's speed: nothing is sampled mid-flight."""
    out: dict = {"messages": CLUSTER_BYTES_MESSAGES, "chatmesh_nodes": CLUSTER_BYTES_NODES, "runs": []}
    rooms = SCENARIO["rooms"]
    for shards in args.cluster_shards:
        for mode in ("sharded", "classic"):
            system = ChatmeshRedisCluster(args, mode, shards, nodes=CLUSTER_BYTES_NODES)
            log(f"== bytes: {system.label}")
            idle_client = None
            try:
                system.start()
                cmd = [str(args.chatmesh), "bench", "--json-only", "--targets", system.targets(),
                       "--idle", str(rooms * CLUSTER_BYTES_NODES), "--rooms", str(rooms),
                       "--room-prefix", ROOM_PREFIX, "--connect-rate", "1000", "--threads", "1"]
                idle_client = start(cmd, f"client-bytes-{system.name}", stdout=subprocess.PIPE)
                line = idle_client.stdout.readline().decode()
                if not line.startswith("{"):
                    raise RuntimeError(f"idle client: no ready line:\n{log_tail(f'client-bytes-{system.name}')}")

                def received() -> dict[str, float]:
                    return {n.name: system.metrics([n.port]).get("chatmesh_redis_received_total", 0)
                            for n in system.nodes}

                time.sleep(1.0)  # the joins' messages arrive
                idle0, t0 = system.byte_counters(), time.monotonic()
                time.sleep(CLUSTER_IDLE_S)
                idle1, idle_s = system.byte_counters(), time.monotonic() - t0

                # where a node would publish each room: its slot's primary (sharded), any node (classic)
                owners = slot_owners(system.backend.ports[0])
                target = {}
                for r in range(rooms):
                    slot = int(resp_command(system.backend.ports[0], "CLUSTER", "KEYSLOT", f"{ROOM_PREFIX}{r}"))
                    target[r] = next(p for a, b, p in owners if a <= slot <= b) if mode == "sharded" \
                        else system.backend.ports[-1]
                commands: dict[int, list[list[str]]] = {}
                for k in range(CLUSTER_BYTES_MESSAGES):
                    payload = say_json(f"b{k % SCENARIO['senders']}", "x" * SCENARIO["payload"])
                    commands.setdefault(target[k % rooms], []).append(
                        ["SPUBLISH" if mode == "sharded" else "PUBLISH", f"{ROOM_PREFIX}{k % rooms}", payload])
                before = received()
                c0, t1 = system.byte_counters(), time.monotonic()
                threads = [threading.Thread(target=publish_pipelined, args=(port, cmds)) for port, cmds in commands.items()]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join(timeout=120)
                deadline = time.monotonic() + 120
                while any(v - before[n] < CLUSTER_BYTES_MESSAGES for n, v in received().items()):
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{system.name}: not every node received the {CLUSTER_BYTES_MESSAGES} "
                                           f"messages: {received()} (before {before})")
                    system.check_alive()
                    time.sleep(0.1)
                c1, busy_s = system.byte_counters(), time.monotonic() - t1
                scale = busy_s / idle_s

                def per_message(key: str) -> float:
                    return ((c1.get(key, 0) - c0.get(key, 0)) - (idle1.get(key, 0) - idle0.get(key, 0)) * scale) \
                        / CLUSTER_BYTES_MESSAGES

                row = {"mode": mode, "shards": shards, "seconds": busy_s,
                       "node_rx_bytes_per_message": {n.name: per_message(f"node_rx_{n.name}") for n in system.nodes},
                       "bus_bytes_per_message": per_message("redis_bus_bytes"),
                       "idle_bus_bytes_per_s": (idle1.get("redis_bus_bytes", 0) - idle0.get("redis_bus_bytes", 0)) / idle_s,
                       "payload_bytes": len(say_json("b10", "x" * SCENARIO["payload"])) + len(f"{ROOM_PREFIX}0")}
                out["runs"].append(row)
                log(f"  {mode} on {shards} shards: per message, each node received "
                    + ", ".join(f"{k} {v:.1f}" for k, v in row["node_rx_bytes_per_message"].items())
                    + f" B from Redis; the cluster bus carried {row['bus_bytes_per_message']:,.0f} B "
                    f"(idle gossip {row['idle_bus_bytes_per_s']:,.0f} B/s subtracted; {busy_s:.1f} s)")
            except Exception as e:  # noqa: BLE001 - one failed run does not lose the others
                log(f"  {system.name} FAILED: {e}")
                out.setdefault("errors", {})[system.name] = str(e)
            finally:
                if idle_client is not None:
                    stop(idle_client)
                    if idle_client in PROCS:
                        PROCS.remove(idle_client)
                system.stop()
    return out


def print_cluster_bytes(cb: dict) -> None:
    print(f"Redis Cluster bytes per message ({cb['messages']:,} says of {SCENARIO['payload']} bytes put into Redis "
          f"as a node publishes them; {cb['chatmesh_nodes']} chatmesh nodes, each with a member in every room; "
          f"idle traffic subtracted):")
    print(f"  {'mode':8} {'shards':>6}  {'each node receives from Redis (B)':>36}  {'cluster bus (B)':>15}")
    for row in cb["runs"]:
        rx = " / ".join(f"{v:.1f}" for v in row["node_rx_bytes_per_message"].values())
        print(f"  {row['mode']:8} {row['shards']:>6}  {rx:>36}  {row['bus_bytes_per_message']:>15,.0f}")


def run_system(args, system: System) -> dict:
    log(f"== {system.label}")
    res: dict = {"label": system.label, "chatmesh_nodes": getattr(system, "node_count", 1)}
    if not args.skip_idle:
        res["idle"] = idle_rss(args, system)
    system.start()
    try:
        res["pids"] = system.pids
        runs = {}
        profile = system.name in args.profile
        runs["rate5"] = bench(args, system, rate=5, label="rate 5")
        runs["max_w8"] = bench(args, system, rate=0, window=8, label="max, window 8")
        ladder = []
        for rung in args.ladder:
            r = bench(args, system, rate=rung, label=f"rate {rung}", profile=profile and rung == 50)
            runs[f"rate{rung}"] = r
            ladder.append({"rate": rung, "ok": sustainable(r)})
            if not sustainable(r):
                break
        if "rate50" not in runs:
            runs["rate50"] = bench(args, system, rate=50, label="rate 50", profile=profile)
        if profile and "profile" in runs["rate50"]:
            prof = runs["rate50"]["profile"]
            log(f"  {system.name} perf profile of {system.label.split(' (')[0]} node a1, rate 50 "
                f"({prof.get('samples')} samples; {prof.get('report') or prof.get('error')}):\n    " +
                "\n    ".join(prof.get("top_self", [])[:15]))
        res["runs"] = runs
        res["ladder"] = ladder
        best = 0
        for step in ladder:
            if not step["ok"]:
                break
            best = step["rate"]
        res["max_sustainable_rate"] = best
    finally:
        system.stop()
    return res


# ------------------------------------------------------------------------------------------------
# summary

def summarize(name: str, res: dict) -> dict:
    runs = res.get("runs", {})
    s: dict = {}
    r50, rmax, r5 = runs.get("rate50"), runs.get("max_w8"), runs.get("rate5")
    if r50:
        s["cpu_us_per_delivery_rate50"] = r50.get("server_cpu_us_per_delivery")
        s["deliveries_per_s_rate50"] = r50["deliveries_per_s"]
    if rmax:
        s["cpu_us_per_delivery_max_w8"] = rmax.get("server_cpu_us_per_delivery")
        s["deliveries_per_s_max_w8"] = rmax["deliveries_per_s"]
    s["max_sustainable_rate"] = res.get("max_sustainable_rate")
    s["join_echoes_missing"] = sum(r["connected"] - r["joined"] for r in runs.values())
    if runs:
        s["max_sustainable_deliveries_per_s"] = (res.get("max_sustainable_rate") or 0) * SCENARIO["senders"] * (
            SCENARIO["clients"] // SCENARIO["rooms"])
    if r5:
        s["latency_p50_ms_rate5"] = r5["latency_p50_ms"]
        s["latency_p99_ms_rate5"] = r5["latency_p99_ms"]
    if "idle" in res:
        s["rss_per_idle_connection_bytes"] = res["idle"]["rss_per_connection_bytes"]
    for key, run in (("rate50", r50), ("max_w8", rmax)):
        writes = (run or {}).get("server_counters", {}).get("write_syscalls")
        if writes:
            s[f"frames_per_write_{key}"] = run["window_deliveries"] / writes
    # (e) inter-node bytes per message, from the rate-50 run's server counters
    c = (r50 or {}).get("server_counters", {})
    # the Socket.IO packet a say becomes: 2["message",{"event":"broadcast_say","data":{"username":"bN","text":"…"}}]
    senders = SCENARIO["senders"]
    avg_user = sum(len(f"b{i}") for i in range(senders)) / senders
    avg_room = sum(len(f"{ROOM_PREFIX}{i}") for i in range(SCENARIO["rooms"])) / SCENARIO["rooms"]
    event_json = len('{"event":"broadcast_say","data":{"username":"","text":""}}') + avg_user + SCENARIO["payload"]
    packet = len('2["message",]') + event_json
    if c.get("mesh_pubs_forwarded"):
        per = c["mesh_bytes_out"] / c["mesh_pubs_forwarded"]
        s["internode_bytes_per_message"] = per
        s["internode_payload_bytes"] = packet
        s["internode_overhead_bytes"] = per - packet
        s["internode_overhead_bytes_without_room"] = per - packet - avg_room
        s["internode_frames_per_pub"] = c["mesh_frames_out"] / c["mesh_pubs_forwarded"]
        if c.get("mesh_wire_bytes_out"):
            s["internode_wire_bytes_per_message"] = c["mesh_wire_bytes_out"] / c["mesh_pubs_forwarded"]
    if "mesh_link_rejects" in c:
        s["mesh_link_rejects_rate50"] = c["mesh_link_rejects"]
    if "gauge_recovery_bytes_held" in c:  # summed over the 2 nodes at the window's close
        s["recovery_bytes_held_per_node_rate50"] = c["gauge_recovery_bytes_held"] / 2
    mem = res.get("recovery_memory", {}).get("mesh-recovery")
    if mem:
        s["recovery_bytes_per_kept_message"] = mem.get("bytes_held_per_kept_message")
        s["recovery_rss_per_kept_message"] = mem.get("rss_bytes_per_kept_message")
        s["recovery_bytes_per_held_session"] = mem.get("bytes_held_per_held_session")
        s["recovery_rss_per_held_session"] = mem.get("rss_bytes_per_held_session")
        s["recovery_mesh_bytes_per_session"] = mem.get("mesh_bytes_per_session_beyond_plain")
    if c.get("redis_publish_calls"):
        pubs = c["redis_publish_calls"]
        nodes = res.get("chatmesh_nodes", 2)
        s["redis_in_bytes_per_publish"] = c["redis_net_in"] / pubs
        s["redis_out_bytes_per_publish"] = c["redis_net_out"] / pubs
        # per message per link: node->redis PUBLISH, and redis->each subscribed node
        s["internode_bytes_per_message"] = (c["redis_net_in"] + c["redis_net_out"]) / pubs / (1 + nodes)
        s["internode_payload_bytes"] = event_json
        s["internode_overhead_bytes"] = s["internode_bytes_per_message"] - event_json
    return s


FIGURES = [
    ("(a) server CPU µs per delivery, rate 50", "cpu_us_per_delivery_rate50", "{:.2f}"),
    ("    deliveries/s at rate 50", "deliveries_per_s_rate50", "{:,.0f}"),
    ("    deliveries per write syscall at rate 50", "frames_per_write_rate50", "{:.2f}"),
    ("(a) server CPU µs per delivery, max (window 8)", "cpu_us_per_delivery_max_w8", "{:.2f}"),
    ("    deliveries/s at max (window 8)", "deliveries_per_s_max_w8", "{:,.0f}"),
    ("    deliveries per write syscall at max", "frames_per_write_max_w8", "{:.2f}"),
    ("(b) max sustainable rate per sender", "max_sustainable_rate", "{:.0f}"),
    ("    = deliveries/s", "max_sustainable_deliveries_per_s", "{:,.0f}"),
    ("(c) latency p50 ms, rate 5", "latency_p50_ms_rate5", "{:.2f}"),
    ("(c) latency p99 ms, rate 5", "latency_p99_ms_rate5", "{:.2f}"),
    ("(d) RSS bytes per idle connection", "rss_per_idle_connection_bytes", "{:,.0f}"),
    ("(e) inter-node bytes per message per link", "internode_bytes_per_message", "{:.1f}"),
    ("    of which framing (beyond the payload)", "internode_overhead_bytes", "{:.1f}"),
    ("    framing beyond payload and room name", "internode_overhead_bytes_without_room", "{:.1f}"),
    ("    on the wire (TCP payload, TLS records too)", "internode_wire_bytes_per_message", "{:.1f}"),
    ("(f) recovery bytes held per node, end of rate 50", "recovery_bytes_held_per_node_rate50", "{:,.0f}"),
    ("    per kept message (gauge)", "recovery_bytes_per_kept_message", "{:,.0f}"),
    ("    per kept message, RSS", "recovery_rss_per_kept_message", "{:,.0f}"),
    ("    per held session (gauge)", "recovery_bytes_per_held_session", "{:,.0f}"),
    ("    per held session, RSS (minus plain mesh)", "recovery_rss_per_held_session", "{:,.0f}"),
    ("    mesh bytes per session (minus plain mesh)", "recovery_mesh_bytes_per_session", "{:,.0f}"),
]

# Columns also shown as a ratio to another column than the floor: mesh-tls and mesh-recovery to
# plain mesh (the issues' targets, CPU per delivery at rate 50: TLS ≤ 1.10×, recovery ≤ 1.15×).
RELATIVE_TO = {"mesh-tls": "mesh", "mesh-recovery": "mesh", "redis-cluster": "redis"}
TARGETS = {"mesh-tls": 1.10, "mesh-recovery": 1.15}


def table(summaries: dict, order: list[str]) -> list[dict]:
    rows = []
    floor = summaries.get("floor", {})
    for title, key, fmt in FIGURES:
        row = {"figure": title, "key": key}
        for name in order:
            v = summaries.get(name, {}).get(key)
            row[name] = v
            f = floor.get(key)
            if name != "floor" and isinstance(v, (int, float)) and isinstance(f, (int, float)) and f:
                row[f"{name}_x_floor"] = v / f
            base = RELATIVE_TO.get(name)
            b = summaries.get(base, {}).get(key) if base in order else None
            if isinstance(v, (int, float)) and isinstance(b, (int, float)) and b:
                row[f"{name}_x_{base}"] = v / b
        rows.append(row)
    return rows


def print_table(rows: list[dict], order: list[str], labels: dict) -> str:
    def cell(v, fmt):
        return "-" if v is None else fmt.format(v)
    fmts = {k: f for _, k, f in FIGURES}
    def ratios(n: str) -> list[str]:
        return ([] if n == "floor" or "floor" not in order else ["floor"]) + \
            ([RELATIVE_TO[n]] if RELATIVE_TO.get(n) in order else [])
    header = ["figure"] + [h for n in order for h in [n] + [f"×{b}" for b in ratios(n)]]
    body = []
    for row in rows:
        line = [row["figure"]]
        for n in order:
            line.append(cell(row.get(n), fmts[row["key"]]))
            for b in ratios(n):
                x = row.get(f"{n}_x_{b}")
                line.append("-" if x is None else f"{x:.2f}×")
        body.append(line)
    widths = [max(len(str(r[i])) for r in [header] + body) for i in range(len(header))]
    out = []
    for j, r in enumerate([header] + body):
        out.append("  ".join(str(c).ljust(widths[i]) if i == 0 else str(c).rjust(widths[i]) for i, c in enumerate(r)))
        if j == 0:
            out.append("  ".join("-" * w for w in widths))
    legend = "; ".join(f"{n} = {labels[n]}" for n in order)
    return "\n".join(out) + "\n" + legend


# ------------------------------------------------------------------------------------------------

def find_shared() -> Path | None:
    env = os.environ.get("CHATMESH_SHARED")
    candidates = ([Path(env)] if env else []) + [ROOT.parent / "shared", ROOT / "shared", ROOT.parent.parent / "shared"]
    for c in candidates:
        if (c / "bench" / "floor.c").exists():
            return c
    return None


def machine() -> dict:
    info = {"cores": os.cpu_count(), "kernel": platform.release(), "python": platform.python_version()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        mem = Path("/proc/meminfo").read_text().split("\n")[0].split()
        info["memory_gib"] = round(int(mem[1]) / 1024 / 1024, 1)
        info["loadavg_at_start"] = Path("/proc/loadavg").read_text().split()[:3]
    except OSError:
        pass
    return info


def ensure_redis(args) -> str | None:
    path = shutil.which("redis-server") or ("/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server") else None)
    if path or os.geteuid() != 0:
        return path
    log("installing redis-server (apt-get)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    lock = ["-o", "DPkg::Lock::Timeout=600"]
    subprocess.run(["apt-get", *lock, "update", "-qq"], env=env, check=False)
    subprocess.run(["apt-get", *lock, "install", "-y", "-qq", "--no-install-recommends", "redis-server"],
                   env=env, check=False, stdout=subprocess.DEVNULL)
    if os.path.exists("/usr/sbin/service"):
        # Debian's package starts its own redis on 6379; we use our own, so stop that one.
        subprocess.run(["service", "redis-server", "stop"], check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return shutil.which("redis-server")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--systems", "--targets", dest="systems",
                    default="floor,mesh,mesh-tls,mesh-recovery,redis,redis-cluster",
                    help="comma-separated: floor, mesh, mesh-tls, mesh-recovery, redis, redis-cluster")
    ap.add_argument("--cluster-nodes", type=int, default=2,
                    help="chatmesh nodes of the redis-cluster column (default 2, as the redis and mesh columns)")
    ap.add_argument("--cluster-bytes", action="store_true",
                    help="only the Redis Cluster bytes per message, sharded vs classic (--cluster-shards); no scenario F")
    ap.add_argument("--skip-cluster-bytes", action="store_true",
                    help="no bytes comparison after the redis-cluster column")
    ap.add_argument("--cluster-shards", default="3,4",
                    help="shard counts of the bytes comparison (each a fresh cluster, N primaries + N replicas)")

    ap.add_argument("--profile", default="", help="comma-separated systems (e.g. mesh,mesh-tls) whose node a1 is "
                    "recorded with `perf record -g` during the rate-50 window")
    ap.add_argument("--duration", type=float, default=8.0, help="measured seconds per run")
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--ladder", default=",".join(map(str, LADDER)))
    ap.add_argument("--idle", type=int, default=IDLE_CONNECTIONS)
    ap.add_argument("--skip-idle", action="store_true")
    ap.add_argument("--recovery-memory", action="store_true",
                    help="only the memory of recovery (bytes per kept message and per held session; "
                    "--idle sessions); no scenario F")
    ap.add_argument("--skip-recovery-memory", action="store_true",
                    help="no memory run after the mesh-recovery column")
    ap.add_argument("--client-threads", type=int, default=2)
    ap.add_argument("--node-threads", type=int, default=0, help="event loops per chatmesh node (0: its default)")
    ap.add_argument("--quick", action="store_true", help="3 s windows, ladder 25,50,100, 2,000 idle")
    ap.add_argument("--chatmesh", default=os.environ.get("CHATMESH_BIN", str(ROOT / ".build" / "release" / "chatmesh")))
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "latest.json"))
    args = ap.parse_args()
    if args.quick:
        args.duration, args.warmup, args.ladder, args.idle = 3.0, 1.0, "25,50,100", 2000
    args.ladder = [int(x) for x in args.ladder.split(",") if x]
    order = [s.strip() for s in args.systems.split(",") if s.strip()]
    if args.recovery_memory:
        order = ["mesh-recovery"]
    if args.cluster_bytes:
        order = ["redis-cluster"]
    args.cluster_shards = [int(x) for x in args.cluster_shards.split(",") if x]
    args.profile = [s.strip() for s in args.profile.split(",") if s.strip()]
    known = {"floor", "mesh", "mesh-tls", "mesh-recovery", "redis", "redis-cluster"}
    if set(order + args.profile) - known:
        log(f"unknown system(s) {sorted(set(order + args.profile) - known)}: choose from {sorted(known)}")
        return 2
    if args.profile and not shutil.which("perf"):
        log("--profile needs perf (Debian: apt-get install linux-perf)")
        return 2

    atexit.register(stop_all)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    args.chatmesh = Path(args.chatmesh).resolve()
    if not args.chatmesh.exists():
        log(f"no chatmesh binary at {args.chatmesh}: run `swift build -c release` (or `make bench`)")
        return 1
    shared = find_shared()
    if "floor" in order:
        if shared is None:
            log("../shared/bench/floor.c not found (set CHATMESH_SHARED); running without the floor")
            order.remove("floor")
        else:
            args.floor_bin = ROOT / ".build" / "floor"
            args.floor_bin.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(["gcc", "-O2", "-o", str(args.floor_bin), str(shared / "bench" / "floor.c")], check=True)
    if {"redis", "redis-cluster"} & set(order):
        args.redis_bin = ensure_redis(args)
        args.redis_cli = shutil.which("redis-cli")
        if not args.redis_bin:
            log("no redis-server (and cannot install it): running without redis mode")
            order = [n for n in order if n not in ("redis", "redis-cluster")]
        elif "redis-cluster" in order and not args.redis_cli:
            log("no redis-cli (Debian: redis-tools): running without the redis-cluster column")
            order.remove("redis-cluster")

    systems = {"floor": lambda: Floor(args), "mesh": lambda: Chatmesh(args, "mesh"),
               "mesh-tls": lambda: Chatmesh(args, "mesh", tls=True),
               "mesh-recovery": lambda: Chatmesh(args, "mesh", recovery=True), "redis": lambda: Chatmesh(args, "redis"),
               "redis-cluster": lambda: ChatmeshRedisCluster(args, "sharded", 3, args.cluster_nodes, name="redis-cluster")}
    started = time.monotonic()
    results, summaries, labels, errors = {}, {}, {}, {}
    env = machine()
    log(f"logs in {LOG_DIR}; machine {env.get('cpu', '?')}, {env['cores']} cores, load {env.get('loadavg_at_start')}")
    for name in order:
        system = systems[name]()
        labels[name] = system.label
        try:
            results[name] = {"label": system.label} if args.recovery_memory or args.cluster_bytes \
                else run_system(args, system)
            summaries[name] = summarize(name, results[name])
        except Exception as e:  # one system failing does not lose the others' figures
            log(f"{name} FAILED: {e}")
            errors[name] = str(e)
            system.stop()
    if "mesh-recovery" in results and (args.recovery_memory or not args.skip_recovery_memory):
        try:
            results["mesh-recovery"]["recovery_memory"] = recovery_memory(args)
        except Exception as e:  # noqa: BLE001 - the scenario F figures stand without it
            log(f"recovery memory FAILED: {e}")
            errors["recovery-memory"] = str(e)
            stop_all()
        summaries["mesh-recovery"] = summarize("mesh-recovery", results["mesh-recovery"])
    if "redis-cluster" in results and (args.cluster_bytes or not args.skip_cluster_bytes):
        try:
            results["redis-cluster"]["bytes_by_mode"] = cluster_bytes(args)
        except Exception as e:  # noqa: BLE001 - the scenario F figures stand without it
            log(f"cluster bytes FAILED: {e}")
            errors["cluster-bytes"] = str(e)
            stop_all()
    rows = table(summaries, order)
    text = print_table(rows, order, labels)
    print()
    print(f"Scenario F: {SCENARIO['clients']} clients, {SCENARIO['rooms']} rooms, {SCENARIO['senders']} senders, "
          f"{SCENARIO['payload']}-byte text; {args.duration:g} s windows after {args.warmup:g} s warmup; "
          f"bench client: {args.client_threads} threads on the same {env['cores']} cores.")
    print(text)
    for name in order:
        missing = summaries.get(name, {}).get("join_echoes_missing")
        if missing:
            print(f"{name}: {missing} client(s) never received their own join broadcast (see the run log)")
    for name, target in TARGETS.items():
        for key, where in (("cpu_us_per_delivery_rate50", "at rate 50"), ("cpu_us_per_delivery_max_w8", "at max (window 8)")):
            ratio = next((r.get(f"{name}_x_mesh") for r in rows if r["key"] == key), None)
            if ratio is not None:
                goal = f" (target ≤ {target:.2f}×)" + ("" if ratio <= target else "  ABOVE TARGET") \
                    if key.endswith("rate50") else ""
                print(f"{name}: CPU per delivery {where} = {ratio:.2f}× plain mesh{goal}")
    mem = results.get("mesh-recovery", {}).get("recovery_memory")
    if mem:
        rec, plain = mem["mesh-recovery"], mem["mesh"]
        fill = rec["fill"]
        print(f"mesh-recovery memory, per node (every node keeps every room and every session): "
              f"{rec['bytes_held_per_kept_message']:.0f} B per kept message by the gauge, "
              f"{rec['rss_bytes_per_kept_message']:.0f} B by RSS beyond plain mesh's after the same traffic "
              f"({fill['messages_kept_per_node']:,} kept: "
              f"{SCENARIO['rooms']} rooms × room_messages {mem['room_messages']}, {SCENARIO['payload']}-byte text); "
              f"{rec['bytes_held_per_held_session']:.0f} B per held session by the gauge (record + its join "
              f"broadcast kept), {rec['rss_bytes_per_held_session']:.0f} B by RSS "
              f"({rec['rss_growth_per_dropped_session']:.0f} B RSS growth per dropped session, minus "
              f"{plain['rss_growth_per_dropped_session']:.0f} B on plain mesh; {rec['joined']:,} sessions); "
              f"{rec['mesh_bytes_per_session_beyond_plain']:.0f} B more between the nodes per session (connect, "
              f"join, drop) than plain mesh")
    cb = results.get("redis-cluster", {}).get("bytes_by_mode")
    if cb and cb.get("runs"):
        print_cluster_bytes(cb)
    for name, err in (cb or {}).get("errors", {}).items():
        errors[f"cluster-bytes {name}"] = err
    tls = summaries.get("mesh-tls", {})
    if tls:
        wire, app = tls.get("internode_wire_bytes_per_message"), tls.get("internode_bytes_per_message")
        if wire is not None and app:
            # TLS 1.3 (AES-GCM / ChaCha20) adds 22 bytes per record: 5 header, 1 type, 16 tag.
            print(f"mesh-tls: {wire:.1f} bytes on the wire per message for {app:.1f} bytes of mesh frames "
                  f"(+{wire - app:.1f}: TLS records){'' if wire > app else '  NOT ENCRYPTED?'}")
        if tls.get("mesh_link_rejects_rate50"):
            print(f"mesh-tls: {tls['mesh_link_rejects_rate50']:.0f} mesh link rejects during the rate-50 window")
    for name, err in errors.items():
        print(f"{name}: FAILED: {err.splitlines()[0] if err else ''}")
    doc = {
        "generated_at": dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat(),
        "machine": env,
        "scenario": {**SCENARIO, "ladder": args.ladder, "p99_limit_ms": P99_LIMIT_MS, "duration_s": args.duration,
                     "warmup_s": args.warmup, "idle_connections": args.idle, "client_threads": args.client_threads,
                     "quick": args.quick},
        "systems": labels,
        "table": rows,
        "summary": summaries,
        "results": results,
        "errors": errors,
        "elapsed_s": round(time.monotonic() - started, 1),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    tmp.replace(out)
    log(f"results in {out} ({doc['elapsed_s']} s)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
