#!/usr/bin/env python3
"""`make bench-scale`: what the full mesh costs as it grows. N `chatmesh serve` nodes on this
machine (loopback, one event loop each: --threads 1), for each N of --nodes (default 10,25,50):

    python3 bench/scale.py --nodes 10,25,50      # ~3 min on 2 cores with the release build
    python3 bench/scale.py --nodes 10 --rooms 2000 --idle-seconds 3 --duration 2   # a smoke run
    python3 bench/scale.py --nodes 100 --phases form,idle     # only formation and idle cost
    python3 bench/scale.py --nodes 50 --baseline 0 --phases form,restart   # the whole cluster restarting at once
    python3 bench/scale.py --nodes 3 --baseline 0 --phases form,oversize --mesh max_frame=1100000

Phases (--phases, all by default):
  form     every node spawned at once; seconds until every node's /healthz lists all N-1 peers
           up; link ups and handshake refusals counted from /metrics (a link that came up more
           than once per side, or `too_many_handshakes`, is a reconnect storm); RSS and open
           descriptors per node. A 2-node cluster (--baseline) gives RSS(2), so RSS per link is
           (RSS(N) - RSS(2)) / (N - 2): the links a node holds beyond the one it has at N=2.
  idle     CPU (utime+stime from /proc) of the whole cluster over --idle-seconds with no client:
           the heartbeats (a PING per link direction per [mesh] ping_interval, each answered);
           mesh frames in that window from /metrics, taken before and after.
  deliver  CPU per delivery with one room whose members sit on 2, 10 and all N nodes: the same
           --clients clients (round robin over the first k nodes), --senders of them saying
           --rate times a second, `chatmesh bench --server-pids <every node>`; gross, and net of
           the idle cluster's CPU over the same window; PUBs forwarded per say (/metrics, every
           node, before and after), which should be k-1 whatever N is.
  rejoin   --rooms rooms with one idle client each, all on the first node (`chatmesh bench
           --idle`); then the last node (the one every other node dials) is restarted: seconds
           until it is linked to every peer and has the first node's SNAPSHOT, and the bytes it
           got from the first node beyond what it got from a node without rooms (the SNAPSHOT,
           next to its size computed from the room names); then every node but the first is
           restarted at once (a SNAPSHOT storm: the first node sends its rooms N-1 times), and
           the seconds until the mesh is whole again and the first node's bytes out.
  restart  every node stopped, then all N spawned again at once (a whole cluster restarting
           together: a deploy, a power cut), --restarts times: seconds until every node lists all
           N-1 peers up; link ups per link side (1.0: no link came up twice) and handshake
           refusals by reason from the fresh processes' /metrics, counted --settle s after.
  oversize (not by default: it shows a failure) --rooms rooms on the first node with ids long
           enough that their SNAPSHOT exceeds [mesh] max_frame (so pass --mesh max_frame=…
           below rooms × 130), then the last node restarts: for --idle-seconds, how often its
           link to the first node is refused (`bad_frame`) and comes up again.

Prints a table (and docs/SCALE.md's figures come from it); everything goes to
bench/results/scale.json. Every process is started and stopped here by pid, also on failure.
Uses .build/release/chatmesh (or --binary / $CHATMESH_BIN), copied first, since other builds may
rewrite it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "IntegrationTests"))

from harness.node import Metrics, NodeProcess, config_text  # noqa: E402
from harness.process import free_ports, popen, stop_process  # noqa: E402

SECRET = "scale-bench-secret-0123456789"
ROOM_PREFIX = "scale-room-"  # the rejoin phase's rooms: prefix + 0 … rooms-1
CLK_TCK = os.sysconf("SC_CLK_TCK")
HTTP = requests.Session()
LIVE: list = []  # every NodeProcess and client Popen still running: stopped at exit / on signal


def log(msg: str) -> None:
    print(f"[scale {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------------
# /proc

def cpu_seconds(pid: int) -> float:
    """CPU time of one process, in seconds: the scheduler's nanoseconds summed over its threads
    (/proc/PID/task/*/schedstat; an idle node spends a few ms a second, below the 10 ms ticks of
    utime + stime), or utime + stime where schedstat is missing."""
    try:
        return sum(int((t / "schedstat").read_text().split()[0])
                   for t in Path(f"/proc/{pid}/task").iterdir()) / 1e9
    except (OSError, ValueError, IndexError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def machine_cpu() -> list[int]:
    return [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]


def busy_and_steal(before: list[int], after: list[int]) -> tuple[float, float]:
    """Share of the machine busy (all processes, ours and the other engineers') and stolen by
    the hypervisor between two samples, in %: the noise these figures were taken in."""
    d = [b - a for a, b in zip(before, after)]
    total = sum(d[:8]) or 1
    idle = d[3] + d[4]
    return round(100.0 * (total - idle) / total, 1), round(100.0 * d[7] / total, 1)


def stop_all() -> None:
    for thing in reversed(LIVE):
        if isinstance(thing, NodeProcess):
            thing.terminate()
    for thing in reversed(LIVE):
        if isinstance(thing, NodeProcess):
            thing.stop()
        else:
            stop_process(thing)
    LIVE.clear()


def on_signal(number, _frame):
    stop_all()
    sys.exit(128 + number)


# ------------------------------------------------------------------------------------------------
# a cluster of N nodes

class ScaleCluster:
    """N nodes n01…nN (zero-padded, so the name order is the number order: n01 dials everyone,
    nN is dialed by everyone) from one cluster.conf on free loopback ports."""

    def __init__(self, args, n: int):
        self.args = args
        self.n = n
        self.dir = Path(tempfile.mkdtemp(prefix=f"chatmesh-scale-{n}-"))
        self.conf = self.dir / "cluster.conf"
        width = max(2, len(str(n)))
        ports = free_ports(2 * n)
        level = [] if os.environ.get("CHATMESH_LOG_LEVEL") else ["--log-level", "warning"]
        self.nodes = [NodeProcess(self.dir, self.conf, f"n{i + 1:0{width}d}", ports[2 * i], ports[2 * i + 1],
                                  args=["--threads", "1", *level]) for i in range(n)]
        for node in self.nodes:
            node.binary = args.binary
        limits = {"say_rate": 1000000, "say_burst": 1000000, "max_connections": args.rooms + 2000}
        self.conf.write_text(config_text(self.nodes, fanout="mesh", secret=SECRET,
                                         sections={"limits": limits, "mesh": dict(args.mesh)},
                                         writer="bench/scale.py"))

    @property
    def names(self) -> list[str]:
        return [x.name for x in self.nodes]

    def pids(self) -> list[int]:
        return [x.pid for x in self.nodes]

    def spawn(self, nodes=None) -> float:
        t0 = time.monotonic()
        for node in nodes or self.nodes:
            node.spawn()
            if node not in LIVE:
                LIVE.append(node)
        return t0

    def stop(self) -> None:
        for node in self.nodes:
            node.terminate()
        for node in self.nodes:
            node.stop()
            if node in LIVE:
                LIVE.remove(node)

    def check_alive(self) -> None:
        dead = [x for x in self.nodes if not x.alive()]
        if dead:
            raise RuntimeError(f"{len(dead)} node(s) died: " + ", ".join(
                f"{x.name} (exit {x.proc.returncode})" for x in dead) + "\n" + dead[0].log_text(3000))

    def peers_up(self, node: NodeProcess) -> set[str]:
        try:
            r = HTTP.get(node.http + "/healthz", timeout=2)
            return set((r.json().get("mesh") or {}).get("peers_up", []))
        except (OSError, ValueError):
            return set()

    def wait_mesh(self, t0: float, timeout: float, nodes=None) -> float:
        """Seconds from t0 until every node (of `nodes`) lists all its N-1 peers up; a node once
        complete is not asked again (a link that drops later shows in the link-up counts)."""
        waiting = {x.name: x for x in (nodes or self.nodes)}
        while waiting:
            for name, node in list(waiting.items()):
                if self.peers_up(node) >= set(self.names) - {name}:
                    del waiting[name]
            if not waiting:
                break
            if time.monotonic() - t0 > timeout:
                sample = {k: len(self.peers_up(v)) for k, v in list(waiting.items())[:5]}
                raise RuntimeError(f"N={self.n}: mesh not whole after {timeout} s; {len(waiting)} nodes short "
                                   f"(peers up of some: {sample})")
            self.check_alive()
            time.sleep(0.05)
        return time.monotonic() - t0

    def metrics(self, nodes=None) -> list[Metrics]:
        out = []
        for node in nodes or self.nodes:
            r = HTTP.get(node.http + "/metrics", timeout=5)
            r.raise_for_status()
            out.append(Metrics.parse(r.text))
        return out


def total(ms: list[Metrics], name: str, **labels) -> float:
    """A series summed over nodes (and over every label set that matches `labels`)."""
    want = {(k, str(v)) for k, v in labels.items()}
    return sum(v for m in ms for (n, lab), v in m.samples.items() if n == name and want <= lab)


def rejects(ms: list[Metrics]) -> dict:
    out: dict[str, float] = {}
    for m in ms:
        for (n, lab), v in m.samples.items():
            if n == "chatmesh_mesh_link_rejects_total" and v:
                reason = dict(lab).get("reason", "?")
                out[reason] = out.get(reason, 0) + v
    return out


# ------------------------------------------------------------------------------------------------
# the phases

def phase_form(c: ScaleCluster, args) -> dict:
    t0 = c.spawn()
    seconds = c.wait_mesh(t0, args.form_timeout)
    log(f"  N={c.n}: full mesh in {seconds:.2f} s")
    time.sleep(args.settle)
    c.check_alive()
    ms = c.metrics()
    rss = [rss_kib(p) for p in c.pids()]
    fds = [open_fds(p) for p in c.pids()]
    links = c.n * (c.n - 1) // 2
    ups = total(ms, "chatmesh_mesh_link_ups_total")
    return {"seconds": round(seconds, 3), "links": links, "link_ups": int(ups),
            "link_ups_per_link_side": round(ups / (2 * links), 3) if links else None,
            "rejects": rejects(ms),
            "rss_kib_mean": round(sum(rss) / len(rss)), "rss_kib_min": min(rss), "rss_kib_max": max(rss),
            "rss_kib_total": sum(rss), "fds_mean": round(sum(fds) / len(fds), 1), "fds_max": max(fds)}


def phase_idle(c: ScaleCluster, args) -> dict:
    ms0 = c.metrics()
    time.sleep(0.5)  # the scrape's own CPU stays out of the window
    pids = c.pids()
    mc0, cpu0, t0 = machine_cpu(), [cpu_seconds(p) for p in pids], time.monotonic()
    time.sleep(args.idle_seconds)
    cpu1, t1, mc1 = [cpu_seconds(p) for p in pids], time.monotonic(), machine_cpu()
    ms1 = c.metrics()
    busy, steal = busy_and_steal(mc0, mc1)
    cpu = sum(cpu1) - sum(cpu0)
    wall = t1 - t0
    frames = total(ms1, "chatmesh_mesh_frames_total", direction="out") - \
        total(ms0, "chatmesh_mesh_frames_total", direction="out")
    res = {"seconds": round(wall, 2), "cluster_cpu_s": round(cpu, 3),
           "cluster_cpu_pct_of_core": round(100 * cpu / wall, 2),
           "per_node_cpu_pct_of_core": round(100 * cpu / wall / c.n, 3),
           "frames_out_per_s": round(frames / (t1 - t0), 1),
           "cpu_us_per_frame": round(cpu * 1e6 / frames, 2) if frames else None,
           "machine_busy_pct": busy, "machine_steal_pct": steal}
    log(f"  N={c.n}: idle cluster {res['cluster_cpu_pct_of_core']:.1f} % of a core "
        f"({res['frames_out_per_s']:.0f} mesh frames/s, {res['cpu_us_per_frame']} µs each; machine busy {busy} %)")
    return res


def run_client(log_dir: Path, cmd: list[str], name: str, timeout: float, on_mark=None) -> dict:
    """Runs `chatmesh bench` to its end, its stderr in `log_dir`/`name`.log (the cluster's dir:
    kept when the run fails); `on_mark(line)` is called when it says its measured window opens
    and closes, so counters can be sampled exactly around it."""
    out_path = log_dir / f"{name}.log"
    with open(out_path, "wb") as errf:
        proc = popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        LIVE.append(proc)

        def watch():
            for raw in proc.stderr:
                errf.write(raw)
                line = raw.decode(errors="replace").strip()
                if on_mark and line in ("# window open", "# window closed"):
                    on_mark(line)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            out = proc.stdout.read()
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"{name}: bench client timed out\n{out_path.read_text(errors='replace')[-2000:]}")
        finally:
            stop_process(proc)
            LIVE.remove(proc)
            watcher.join(timeout=10)
    lines = [x for x in out.decode().splitlines() if x.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{name}: bench client failed (exit {proc.returncode})\n"
                           f"{out_path.read_text(errors='replace')[-2000:]}")
    return json.loads(lines[-1])


def phase_deliver(c: ScaleCluster, args, idle: dict | None) -> dict:
    out = {}
    for k in sorted({min(2, c.n), min(10, c.n), c.n}):
        targets = ",".join(f"127.0.0.1:{x.port}" for x in c.nodes[:k])
        # PUBs are counted at their origin: the nodes of the senders (the first clients, round robin).
        origins = c.nodes[:min(k, args.senders)]
        marks: dict[str, float] = {}

        def on_mark(line: str) -> None:
            marks[line] = total(c.metrics(origins), "chatmesh_mesh_pubs_forwarded_total")

        cmd = [str(args.binary), "bench", "--json-only", "--targets", targets,
               "--clients", str(args.clients), "--rooms", "1", "--senders", str(args.senders),
               "--rate", str(args.rate), "--duration", str(args.duration), "--warmup", str(args.warmup),
               "--drain", "1", "--payload", "64", "--room-prefix", f"deliver-{k}-of-{c.n}-",
               "--connect-timeout", "30", "--server-pids", ",".join(map(str, c.pids()))]
        r = run_client(c.dir, cmd, f"client-deliver-{k}", args.duration + args.warmup + 120, on_mark)
        c.check_alive()
        forwarded = marks.get("# window closed", 0.0) - marks.get("# window open", 0.0)
        says = r.get("sent") or 0  # says sent in the measured window
        deliveries = r.get("window_deliveries") or 0
        cpu = r.get("server_cpu_s")
        idle_cpu = (idle["cluster_cpu_s"] / idle["seconds"] * r["measured_s"]) if idle and cpu is not None else None
        net = (cpu - idle_cpu) if idle_cpu is not None else None
        says_in_window = deliveries / max(1, r["joined"])
        row = {"member_nodes": k, "clients": r["joined"], "deliveries": deliveries,
               "deliveries_per_s": r.get("deliveries_per_s"), "lost": r.get("lost"),
               "duplicated": r.get("duplicated"), "p99_ms": r.get("latency_p99_ms"),
               "server_cpu_s": cpu, "idle_cpu_s_same_window": round(idle_cpu, 3) if idle_cpu is not None else None,
               "cpu_us_per_delivery": r.get("server_cpu_us_per_delivery"),
               "net_cpu_us_per_delivery": round(net * 1e6 / deliveries, 3) if net is not None and deliveries else None,
               "net_cpu_us_per_say": round(net * 1e6 / says_in_window, 1) if net is not None and says_in_window else None,
               "pubs_forwarded_per_say": round(forwarded / says, 2) if says else None}
        out[str(k)] = row
        log(f"  N={c.n}: room on {k:2} nodes: {row['cpu_us_per_delivery']} µs/delivery gross, "
            f"{row['net_cpu_us_per_delivery']} net, {row['net_cpu_us_per_say']} µs/say net, "
            f"{row['pubs_forwarded_per_say']} PUBs/say, lost {row['lost']}, p99 {row['p99_ms']} ms")
    return out


def snapshot_size(rooms: int) -> int:
    """The SNAPSHOT frame of ROOM_PREFIX0 … ROOM_PREFIX<rooms-1>: u32 length, u8 type, u32
    count, then a u16-prefixed string per room (docs/MESH.md)."""
    return 4 + 1 + 4 + sum(2 + len(f"{ROOM_PREFIX}{i}") for i in range(rooms))


def bytes_in(m: Metrics, peer: str) -> float:
    return m.get("chatmesh_mesh_bytes_total", peer=peer, direction="in") or 0.0


def phase_rejoin(c: ScaleCluster, args) -> dict:
    first, last = c.nodes[0], c.nodes[-1]
    cmd = [str(args.binary), "bench", "--json-only", "--targets", f"127.0.0.1:{first.port}",
           "--idle", str(args.rooms), "--rooms", str(args.rooms), "--room-prefix", ROOM_PREFIX,
           "--connect-rate", "5000", "--connect-timeout", "60"]
    holder = popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    LIVE.append(holder)
    res: dict = {"rooms": args.rooms, "snapshot_frame_bytes_computed": snapshot_size(args.rooms)}
    try:
        t = time.monotonic()
        line = holder.stdout.readline().decode()
        if not line.startswith("{"):
            raise RuntimeError(f"room holder: no ready line (exit {holder.poll()})")
        ready = json.loads(line)
        res["holder_joined"] = ready.get("joined")
        res["holder_connect_s"] = round(time.monotonic() - t, 2)
        if ready.get("joined") != args.rooms:
            log(f"  N={c.n}: only {ready.get('joined')} of {args.rooms} room clients joined")
        time.sleep(args.settle)  # the rooms' SUBs reach every peer
        c.check_alive()
        res["first_node_rss_kib_with_rooms"] = rss_kib(first.pid)

        # One node restarts: the last, which every other node dials (and redials, with backoff).
        last.stop()
        t0 = c.spawn([last])
        expect = res["snapshot_frame_bytes_computed"]
        linked = None
        while True:
            now = time.monotonic()
            if linked is None and c.peers_up(last) >= set(c.names) - {last.name}:
                linked = now - t0
            if linked is not None:
                m = c.metrics([last])[0]
                if bytes_in(m, first.name) >= expect:
                    have = now - t0
                    break
            if now - t0 > args.form_timeout:
                raise RuntimeError(f"N={c.n}: restarted {last.name} not rejoined in {args.form_timeout} s")
            c.check_alive()
            time.sleep(0.02)
        time.sleep(1.0)
        m = c.metrics([last])[0]
        from_first, from_other = bytes_in(m, first.name), bytes_in(m, c.nodes[1].name)
        res.update({"restart_linked_s": round(linked, 3), "restart_snapshot_received_s": round(have, 3),
                    "bytes_in_from_room_holder": int(from_first), "bytes_in_from_node_without_rooms": int(from_other),
                    "snapshot_bytes_measured": int(from_first - from_other)})
        log(f"  N={c.n}: {last.name} restarted: linked to all in {linked:.2f} s, SNAPSHOT of {args.rooms} rooms in "
            f"{have:.2f} s, {int(from_first - from_other)} B (computed {expect} B)")

        # A SNAPSHOT storm: every node but the room holder restarts at once. Its bytes are
        # counted where they arrive: a sender's chatmesh_mesh_bytes_total{direction="out"}
        # misses what it sends as a link comes up (docs/SCALE.md, "What broke or nearly did").
        if c.n > 2:
            rest = c.nodes[1:]
            for x in rest:
                x.terminate()
            for x in rest:
                x.stop()
            cpu0 = cpu_seconds(first.pid)
            t0 = c.spawn(rest)
            whole = c.wait_mesh(t0, args.form_timeout)
            while True:
                got = [bytes_in(m, first.name) for m in c.metrics(rest)]
                if min(got) >= expect:
                    break
                if time.monotonic() - t0 > args.form_timeout:
                    raise RuntimeError(f"N={c.n}: SNAPSHOTs not all received after the storm: {sorted(got)[:5]}")
                time.sleep(0.05)
            snapshots = time.monotonic() - t0
            holder_cpu = cpu_seconds(first.pid) - cpu0
            time.sleep(args.settle)
            m1 = c.metrics()
            res.update({"storm_nodes_restarted": len(rest), "storm_whole_mesh_s": round(whole, 3),
                        "storm_snapshots_received_s": round(snapshots, 3),
                        "storm_bytes_from_room_holder": int(sum(bytes_in(m, first.name) for m in m1[1:])),
                        "storm_room_holder_cpu_s": round(holder_cpu, 3),
                        "storm_link_ups": int(total(m1[1:], "chatmesh_mesh_link_ups_total")),
                        "storm_rejects": rejects(m1)})
            log(f"  N={c.n}: {len(rest)} nodes restarted at once: mesh whole in {whole:.2f} s, every SNAPSHOT in "
                f"{snapshots:.2f} s, {res['storm_bytes_from_room_holder']} B from the room holder "
                f"({holder_cpu:.3f} s of its CPU), {res['storm_link_ups']} link ups for {len(rest) * (c.n - 1)} link ends")
        c.check_alive()
    finally:
        stop_process(holder)
        LIVE.remove(holder)
    return res


def phase_restart(c: ScaleCluster, args) -> dict:
    """The whole cluster restarts at once, `args.restarts` times. The processes are new, so their
    counters start at 0: link ups beyond one per link side, or refusals, are the storm's."""
    runs = []
    links = c.n * (c.n - 1) // 2
    for i in range(args.restarts):
        for x in c.nodes:
            x.terminate()
        for x in c.nodes:
            x.stop()
        mc0 = machine_cpu()
        t0 = c.spawn()
        whole = c.wait_mesh(t0, args.form_timeout)
        time.sleep(args.settle)
        c.check_alive()
        busy, steal = busy_and_steal(mc0, machine_cpu())
        ms = c.metrics()
        ups = total(ms, "chatmesh_mesh_link_ups_total")
        run = {"whole_mesh_s": round(whole, 3), "link_ups": int(ups),
               "link_ups_per_link_side": round(ups / (2 * links), 3) if links else None,
               "rejects": rejects(ms), "machine_busy_pct": busy, "machine_steal_pct": steal}
        runs.append(run)
        log(f"  N={c.n}: restart {i + 1}/{args.restarts} of all {c.n} at once: mesh whole in {whole:.2f} s, "
            f"{run['link_ups_per_link_side']} link ups per link side, refusals {run['rejects'] or 'none'} "
            f"(machine busy {busy} %)")
    times = sorted(r["whole_mesh_s"] for r in runs)
    return {"runs": runs, "whole_mesh_s_median": times[len(times) // 2] if times else None,
            "whole_mesh_s_max": times[-1] if times else None,
            "link_ups_per_link_side_max": max((r["link_ups_per_link_side"] or 0) for r in runs) if runs else None,
            "rejects_total": {k: sum(r["rejects"].get(k, 0) for r in runs)
                              for k in sorted({k for r in runs for k in r["rejects"]})}}


def phase_oversize(c: ScaleCluster, args) -> dict:
    max_frame = int(args.mesh.get("max_frame", 4194304))
    id_len = min(128, -(-max_frame // args.rooms))  # ceil: the ids' bytes alone exceed max_frame
    prefix = "x" * (id_len - len(str(args.rooms - 1)))
    size = 4 + 1 + 4 + sum(2 + len(f"{prefix}{i}") for i in range(args.rooms))
    if size - 4 <= max_frame:
        raise RuntimeError(f"{args.rooms} rooms of 128-byte ids make a {size}-byte SNAPSHOT, within max_frame "
                           f"{max_frame}: pass --mesh max_frame=<smaller> (above [engineio] max_payload + 1024)")
    first, last = c.nodes[0], c.nodes[-1]
    holder = popen([str(args.binary), "bench", "--json-only", "--targets", f"127.0.0.1:{first.port}",
                    "--idle", str(args.rooms), "--rooms", str(args.rooms), "--room-prefix", prefix,
                    "--connect-rate", "5000", "--connect-timeout", "60"],
                   stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    LIVE.append(holder)
    try:
        if not holder.stdout.readline().decode().startswith("{"):
            raise RuntimeError(f"room holder: no ready line (exit {holder.poll()})")
        time.sleep(args.settle)
        last.stop()
        t0 = c.spawn([last])
        time.sleep(args.idle_seconds)
        m_last, m_first = c.metrics([last])[0], c.metrics([first])[0]
        watched = time.monotonic() - t0
        refused = rejects([m_last]).get("bad_frame", 0)
        res = {"max_frame": max_frame, "snapshot_frame_bytes": size, "watched_s": round(watched, 1),
               "bad_frame_refusals": int(refused), "refusals_per_s": round(refused / watched, 1),
               "link_ups_from_first": int(m_last.get("chatmesh_mesh_link_ups_total", peer=first.name) or 0),
               "first_in_peers_up": first.name in c.peers_up(last)}
        log(f"  N={c.n}: SNAPSHOT of {size} B over max_frame {max_frame}: {last.name} refused {first.name}'s link "
            f"{int(refused)} times in {watched:.1f} s ({res['link_ups_from_first']} link ups)")
        c.check_alive()
        return res
    finally:
        stop_process(holder)
        LIVE.remove(holder)


# ------------------------------------------------------------------------------------------------

def run_n(args, n: int, phases: set[str]) -> dict:
    log(f"N={n}: {n} nodes, {n * (n - 1) // 2} links")
    c = ScaleCluster(args, n)
    res: dict = {"nodes": n}
    failed = False
    try:
        res["form"] = phase_form(c, args)
        if "idle" in phases:
            res["idle"] = phase_idle(c, args)
        if "deliver" in phases:
            res["deliver"] = phase_deliver(c, args, res.get("idle"))
        if "rejoin" in phases:
            res["rejoin"] = phase_rejoin(c, args)
        if "restart" in phases:
            res["restart"] = phase_restart(c, args)
        if "oversize" in phases:
            res["oversize"] = phase_oversize(c, args)
    except Exception as e:  # noqa: BLE001 - recorded, the other N still run
        failed = True
        res["error"] = str(e)[:4000]
        log(f"N={n}: FAILED: {str(e)[:2000]}")
    finally:
        c.stop()
        if failed:
            res["logs"] = str(c.dir)
            log(f"  logs kept in {c.dir}")
        else:
            shutil.rmtree(c.dir, ignore_errors=True)
    return res


def fmt(v, spec: str = "") -> str:
    if v is None:
        return "—"
    return format(v, spec) if spec else str(v)


def table(results: list[dict], baseline: dict | None) -> str:
    base_rss = baseline["form"]["rss_kib_mean"] if baseline and "form" in baseline else None
    head = ["N", "links", "full mesh s", "RSS/node MiB", "RSS/link KiB", "fds/node", "idle CPU % core",
            "idle µs/frame", "µs/deliv 2", "µs/deliv 10", "µs/deliv N", "PUBs/say 2·10·N",
            "rejoin s", "SNAPSHOT B", "storm s", "restart all s", "link ups/side"]
    rows = [head]
    for r in results:
        f, i, d, j = r.get("form", {}), r.get("idle", {}), r.get("deliver", {}), r.get("rejoin", {})
        rs = r.get("restart", {})
        ups = [x for x in (f.get("link_ups_per_link_side"), rs.get("link_ups_per_link_side_max")) if x is not None]
        n = r["nodes"]
        per_link = ((f["rss_kib_mean"] - base_rss) / (n - 2)) if base_rss and f and n > 2 else None
        dv = [d.get(str(k), {}) for k in (min(2, n), min(10, n), n)]  # a room on 2, 10, all N nodes
        rows.append([str(n), str(n * (n - 1) // 2), fmt(f.get("seconds"), ".2f"),
                     fmt(f["rss_kib_mean"] / 1024 if f else None, ".1f"), fmt(per_link, ".1f"),
                     fmt(f.get("fds_mean"), ".0f"), fmt(i.get("cluster_cpu_pct_of_core"), ".1f"),
                     fmt(i.get("cpu_us_per_frame"), ".1f"),
                     *[fmt(x.get("net_cpu_us_per_delivery"), ".2f") for x in dv],
                     "·".join(fmt(x.get("pubs_forwarded_per_say"), ".1f") for x in dv),
                     fmt(j.get("restart_snapshot_received_s"), ".2f"), fmt(j.get("snapshot_bytes_measured")),
                     fmt(j.get("storm_snapshots_received_s"), ".2f"), fmt(rs.get("whole_mesh_s_median"), ".2f"),
                     fmt(max(ups) if ups else None, ".3f")])
        if r.get("error"):
            rows.append([str(n), "FAILED: " + r["error"].splitlines()[0][:200]] + [""] * (len(head) - 2))
    widths = [max(len(row[k]) for row in rows) for k in range(len(head))]
    text = "\n".join("  ".join(cell.rjust(w) for cell, w in zip(row, widths)) for row in rows)
    slope = rss_per_link(results)
    if slope:
        text += (f"\nRSS per link end from N={slope[0]} to N={slope[1]}: {slope[2]:.1f} KiB (RSS/link above is "
                 f"against the 2-node baseline: a few links' worth is within the ±200 KiB that RSS varies)")
    return text


def rss_per_link(results: list[dict]) -> tuple[int, int, float] | None:
    """KiB of RSS per link end between the smallest and the largest N of the run (≥ 10 nodes)."""
    pts = sorted((r["nodes"], r["form"]["rss_kib_mean"]) for r in results if "form" in r and r["nodes"] >= 10)
    if len(pts) < 2 or pts[-1][0] == pts[0][0]:
        return None
    (n0, r0), (n1, r1) = pts[0], pts[-1]
    return n0, n1, (r1 - r0) / (n1 - n0)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nodes", default="10,25,50", help="comma-separated cluster sizes")
    p.add_argument("--phases", default="form,idle,deliver,rejoin")
    p.add_argument("--binary", default=os.environ.get("CHATMESH_BIN") or str(ROOT / ".build/release/chatmesh"))
    p.add_argument("--baseline", type=int, default=2, help="cluster size whose RSS is the per-link base (0: none)")
    p.add_argument("--rooms", type=int, default=10000)
    p.add_argument("--idle-seconds", type=float, default=10.0)
    p.add_argument("--clients", type=int, default=100)
    p.add_argument("--senders", type=int, default=10)
    p.add_argument("--rate", type=float, default=20.0)
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--settle", type=float, default=2.0)
    p.add_argument("--restarts", type=int, default=3, help="restart phase: how many whole-cluster restarts")
    p.add_argument("--form-timeout", type=float, default=120.0)
    p.add_argument("--mesh", action="append", default=[], metavar="KEY=VALUE", help="a [mesh] key (repeatable)")
    p.add_argument("--out", default=str(ROOT / "bench/results/scale.json"))
    args = p.parse_args()
    args.mesh = dict(kv.split("=", 1) for kv in args.mesh)
    phases = {x.strip() for x in args.phases.split(",") if x.strip()}
    sizes = [int(x) for x in args.nodes.split(",") if x.strip()]

    src = Path(args.binary)
    if not src.exists():
        p.error(f"no chatmesh binary at {src} (swift build -c release, or --binary)")
    copy = Path(tempfile.gettempdir()) / f"chatmesh-scale-{os.getpid()}"
    shutil.copy2(src, copy)
    args.binary = copy
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    started = dt.datetime.now(dt.timezone.utc)
    load0 = os.getloadavg()
    mc0 = machine_cpu()
    results, baseline = [], None
    try:
        if args.baseline:
            baseline = run_n(args, args.baseline, set())
        for n in sizes:
            results.append(run_n(args, n, phases))
    finally:
        stop_all()
        copy.unlink(missing_ok=True)
    busy, steal = busy_and_steal(mc0, machine_cpu())
    text = table(results, baseline)
    print(text)
    doc = {"started": started.isoformat(timespec="seconds"), "binary": str(src),
           "build": "release" if "release" in str(src) else "debug" if "debug" in str(src) else "other",
           "cores": os.cpu_count(), "loadavg_at_start": [round(x, 2) for x in load0],
           "machine_busy_pct": busy, "machine_steal_pct": steal,
           "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
           "baseline": baseline, "results": results, "table": text,
           "rss_kib_per_link_end": (lambda x: round(x[2], 1) if x else None)(rss_per_link(results))}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1) + "\n")
    log(f"written {out} (machine busy {busy} %, steal {steal} % over the run; load at start "
        f"{load0[0]:.1f})")
    return 1 if any(r.get("error") for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
