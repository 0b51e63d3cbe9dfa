#!/usr/bin/env python3
"""What a relayed WebSocket costs against a direct one (docs/RELAY.md, "Cost").

    python3 bench/relay_cost.py [--binary PATH] [--clients 60] [--rate 50] [--seconds 6] [--rounds 3]

Two mesh nodes A and B (`--threads 1` each) from one cluster.conf on free loopback ports. In
each case N WebSocket clients join one fresh room; every one makes its Engine.IO session by a
polling handshake on A (so A owns it) and then upgrades (2probe/3probe/5) to a WebSocket:

  direct   the upgrade on A too: the client's bytes go straight to its owner;
  relayed  the upgrade on B: B completes the WebSocket handshake, relays every packet the
           client sends to A as RELAY_FRAME and writes A's pre-framed broadcast bytes to the
           client (docs/RELAY.md, "What is relayed").

One more client (the sender, direct on A in both cases) says at --rate per second for --seconds,
each say's text carrying its sequence number and the sender's monotonic clock in ns. Over that
window (after a 1 s warm-up whose deliveries are awaited first) the script takes:

  - server CPU: utime+stime of both node processes from /proc/PID/stat, read just before the
    first say and just after the last delivery arrived (the /metrics reads lie outside it);
  - deliveries: every client counts the window's says it received; all N x says must arrive
    (a shortfall after a 10 s drain is reported as `missing`, not hidden);
  - mesh bytes: chatmesh_mesh_bytes_total{direction="out"} of both nodes (each link byte once);
  - say -> delivery latency at the clients (receive time minus the time in the text; one
    process, one monotonic clock).

Rounds alternate the order of the cases (direct, relayed; then relayed, direct; ...) on the same
two processes, so a noisy machine (other jobs on a 2-core box) loads both about alike; the
relayed/direct ratio of each round is printed beside the absolute figures. The table goes to
stdout, everything to bench/results/relay-cost-<UTC date>.json under `results.<label>` (release,
debug or given, after the binary; --label to choose), so runs of a release and a debug binary
on one day sit side by side. Every process is started and stopped here, by pid, also on failure.

The default binary: .build/release/chatmesh if it is newer than the last commit touching
Sources, else a private copy of .build/debug/chatmesh (other engineers rebuild that one).
"""

from __future__ import annotations

import argparse
import atexit
import datetime as dt
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VENV_PYTHON = REPO / ".venv" / "bin" / "python"

try:
    import requests
    import websocket
except ImportError:  # run by a python3 without the test venv's packages: use the venv's
    if VENV_PYTHON.exists() and not os.environ.get("RELAY_COST_REEXEC"):
        os.environ["RELAY_COST_REEXEC"] = "1"
        os.execv(str(VENV_PYTHON), [str(VENV_PYTHON), *sys.argv])
    raise

sys.path.insert(0, str(REPO / "IntegrationTests"))
from harness.node import NodeProcess, config_text  # noqa: E402
from harness.process import free_ports  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
WARMUP_S = 1.0
DRAIN_S = 10.0
SAY_PREFIX = '42["message",{"event":"broadcast_say"'
TEXT_KEY = '"text":"'

NODES: list[NodeProcess] = []


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def stop_nodes() -> None:
    for node in NODES:
        try:
            node.stop()
        except Exception as e:  # noqa: BLE001 - stop the others too
            log(f"stopping {node.name}: {e!r}")


def on_signal(number, _frame):
    stop_nodes()
    sys.exit(128 + number)


# --------------------------------------------------------------------------------------------
# The binary


def pick_binary(explicit: str | None, workdir: Path) -> tuple[Path, str]:
    if explicit:
        return Path(explicit).resolve(), "given by --binary"
    release = REPO / ".build" / "release" / "chatmesh"
    debug = REPO / ".build" / "debug" / "chatmesh"
    last = subprocess.run(["git", "log", "-1", "--format=%ct", "--", "Sources"], cwd=REPO,
                          capture_output=True, text=True).stdout.strip()
    last_commit = int(last) if last else 0
    if release.exists() and release.stat().st_mtime > last_commit:
        return release, "release (newer than the last commit touching Sources)"
    if not debug.exists():
        raise SystemExit("no .build/release/chatmesh newer than Sources and no .build/debug/chatmesh")
    copy = workdir / "chatmesh"
    shutil.copy2(debug, copy)
    why = "older than" if release.exists() else "absent;"
    return copy, f"copy of debug (release {why} the last commit touching Sources)"


# --------------------------------------------------------------------------------------------
# Process and node figures


def cpu_ticks(pid: int) -> int:
    """utime + stime of a process (all its threads, live and exited), in clock ticks."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5), after "pid (comm)"


def mesh_out_bytes(node: NodeProcess) -> float:
    m = node.metrics()
    return sum(v for (name, labels), v in m.samples.items()
               if name == "chatmesh_mesh_bytes_total" and ("direction", "out") in labels)


def relayed_websockets(node: NodeProcess) -> float:
    """Relayed WebSockets an owner took (it counts each when the stream is set up)."""
    return node.metrics().get("chatmesh_relay_requests_total", kind="websocket", result="ok") or 0.0


def loadavg() -> list[str]:
    return Path("/proc/loadavg").read_text().split()[:3]


# --------------------------------------------------------------------------------------------
# Raw Engine.IO clients: polling handshake on the owner, WebSocket upgrade on a chosen node


def sio_event(event: str, data) -> str:
    return "42" + json.dumps([event, data], separators=(",", ":"), ensure_ascii=False)


class Member:
    """One room member. Its session is made by a polling handshake on `owner` and upgraded to a
    WebSocket on `ws_node` (the owner itself: direct; another node: relayed). A reader thread
    answers pings and, for says whose text starts with the current `tag`, counts them and keeps
    their latency."""

    def __init__(self, owner: NodeProcess, ws_node: NodeProcess, room: str, username: str):
        self.username = username
        self.lock = threading.Lock()
        self.tag: str | None = None
        self.count = 0
        self.latencies_ns: list[int] = []
        q = "EIO=4&roomid=" + urllib.parse.quote(room, safe="")
        r = requests.get(f"{owner.http}/socket.io/?{q}&transport=polling", timeout=5)
        assert r.status_code == 200 and r.text.startswith("0{"), (r.status_code, r.text[:200])
        self.sid = json.loads(r.text[1:])["sid"]
        self.ws = websocket.create_connection(
            f"{ws_node.ws}/socket.io/?{q}&transport=websocket&sid={self.sid}",
            timeout=5, suppress_origin=True)
        self.ws.send("2probe")
        got = self.ws.recv()
        assert got == "3probe", (username, got)
        self.ws.send("5")
        self.ws.send("40")
        self._recv_until(lambda f: f.startswith("40"))
        self.ws.send(sio_event("join", {"username": username}))
        self._recv_until(lambda f: '"event":"join"' in f and f'"{username}"' in f)
        self.ws.settimeout(None)
        self.thread = threading.Thread(target=self._read, daemon=True, name=username)
        self.thread.start()

    def _recv_until(self, pred) -> None:
        while True:
            f = self.ws.recv()
            if f == "2":
                self.ws.send("3")
            elif isinstance(f, str) and pred(f):
                return

    def _read(self) -> None:
        try:
            while True:
                f = self.ws.recv()
                now = time.monotonic_ns()
                if not f:
                    return
                if f == "2":
                    self.ws.send("3")
                    continue
                if not f.startswith(SAY_PREFIX):
                    continue
                i = f.find(TEXT_KEY)
                if i < 0:
                    continue
                text = f[i + len(TEXT_KEY):f.index('"', i + len(TEXT_KEY))]
                tag, _, rest = text.partition(":")
                with self.lock:
                    if tag == self.tag:
                        self.count += 1
                        self.latencies_ns.append(now - int(rest.split(":")[1]))
        except (websocket.WebSocketException, OSError, ValueError):
            return

    def expect(self, tag: str) -> None:
        with self.lock:
            self.tag, self.count, self.latencies_ns = tag, 0, []

    def counted(self) -> int:
        with self.lock:
            return self.count

    def say(self, text: str) -> None:
        self.ws.send(sio_event("say", {"text": text}))

    def close(self) -> None:
        try:
            self.ws.send("41")
            self.ws.close(timeout=1)
        except Exception:  # noqa: BLE001 - closing what may be closed already
            pass


def send_says(sender: Member, tag: str, rate: float, seconds: float) -> int:
    """`rate` says per second for `seconds`, paced against the start (no drift); returns how
    many. Text: `<tag>:<seq>:<monotonic ns>`."""
    n = int(round(rate * seconds))
    start = time.monotonic()
    for i in range(n):
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        sender.say(f"{tag}:{i}:{time.monotonic_ns()}")
    return n


def await_deliveries(members: list[Member], want: int, timeout: float) -> int:
    """Waits until every member counted `want` says (or `timeout`); returns how many are
    missing."""
    deadline = time.monotonic() + timeout
    while True:
        missing = sum(max(0, want - m.counted()) for m in members)
        if missing == 0 or time.monotonic() > deadline:
            return missing
        time.sleep(0.005)


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(-(-p / 100 * len(s) // 1)) - 1))
    return s[k]


# --------------------------------------------------------------------------------------------
# One case of one round


def run_case(case: str, rnd: int, a: NodeProcess, b: NodeProcess, args) -> dict:
    ws_node = a if case == "direct" else b
    room = f"relay-cost-{case}-{rnd}-{os.getpid()}"
    relayed_before = relayed_websockets(a)
    members: list[Member] = []
    sender = None
    try:
        for i in range(args.clients):
            members.append(Member(a, ws_node, room, f"{case[0]}{rnd}m{i}"))
        sender = Member(a, a, room, f"{case[0]}{rnd}sender")
        relayed_opened = relayed_websockets(a) - relayed_before

        # Warm-up: the same traffic for 1 s, its deliveries awaited before the window opens.
        warm = f"w{case[0]}{rnd}"
        for m in members:
            m.expect(warm)
        n = send_says(sender, warm, args.rate, WARMUP_S)
        warm_missing = await_deliveries(members, n, DRAIN_S)

        tag = f"m{case[0]}{rnd}"
        for m in members:
            m.expect(tag)
        mesh0 = mesh_out_bytes(a) + mesh_out_bytes(b)
        load0 = loadavg()
        t0 = time.monotonic()
        cpu0 = [cpu_ticks(a.pid), cpu_ticks(b.pid)]
        says = send_says(sender, tag, args.rate, args.seconds)
        missing = await_deliveries(members, says, DRAIN_S)
        cpu1 = [cpu_ticks(a.pid), cpu_ticks(b.pid)]
        t1 = time.monotonic()
        mesh1 = mesh_out_bytes(a) + mesh_out_bytes(b)
        load1 = loadavg()
    finally:
        for m in members + ([sender] if sender else []):
            m.close()

    deliveries = sum(m.counted() for m in members)
    lat_ms = [x / 1e6 for m in members for x in m.latencies_ns]
    cpu_us = [(c1 - c0) * 1e6 / CLK_TCK for c0, c1 in zip(cpu0, cpu1)]
    per = max(deliveries, 1)
    return {
        "case": case, "round": rnd, "clients": args.clients, "says": says,
        "deliveries": deliveries, "expected": says * args.clients, "missing": missing,
        "warmup_missing": warm_missing, "relayed_websockets_taken_by_A": relayed_opened,
        "window_s": round(t1 - t0, 3),
        "cpu_us": {"A": cpu_us[0], "B": cpu_us[1], "both": sum(cpu_us)},
        "cpu_us_per_delivery": {"A": cpu_us[0] / per, "B": cpu_us[1] / per,
                                "both": sum(cpu_us) / per},
        "mesh_bytes": mesh1 - mesh0, "mesh_bytes_per_delivery": (mesh1 - mesh0) / per,
        "latency_ms": {"p50": percentile(lat_ms, 50), "p99": percentile(lat_ms, 99),
                       "max": max(lat_ms) if lat_ms else None},
        "loadavg": [load0, load1],
    }


# --------------------------------------------------------------------------------------------
# Summary


def summarize(runs: list[dict]) -> dict:
    out = {}
    for case in ("direct", "relayed"):
        rs = [r for r in runs if r["case"] == case]
        d = sum(r["deliveries"] for r in rs) or 1
        out[case] = {
            "rounds": len(rs),
            "deliveries": sum(r["deliveries"] for r in rs),
            "missing": sum(r["missing"] for r in rs),
            "cpu_us_per_delivery": {k: sum(r["cpu_us"][k] for r in rs) / d for k in ("A", "B", "both")},
            "mesh_bytes_per_delivery": sum(r["mesh_bytes"] for r in rs) / d,
            "latency_ms_p50_median": statistics.median(r["latency_ms"]["p50"] for r in rs),
            "latency_ms_p99_median": statistics.median(r["latency_ms"]["p99"] for r in rs),
        }
    ratios = []
    for rnd in sorted({r["round"] for r in runs}):
        pair = {r["case"]: r for r in runs if r["round"] == rnd}
        if len(pair) == 2 and pair["direct"]["cpu_us"]["both"] > 0:
            ratios.append(pair["relayed"]["cpu_us_per_delivery"]["both"]
                          / pair["direct"]["cpu_us_per_delivery"]["both"])
    out["relayed_over_direct_cpu"] = {"per_round": ratios,
                                      "median": statistics.median(ratios) if ratios else None}
    return out


def fmt(x, spec=".1f") -> str:
    return "-" if x is None else format(x, spec)


def table(runs: list[dict], summary: dict) -> str:
    head = (f"{'round':>5} {'case':<8} {'deliv':>6} {'miss':>4} {'CPU us/deliv':>12} "
            f"{'  A':>6} {'  B':>6} {'mesh B/deliv':>12} {'p50 ms':>7} {'p99 ms':>7}")
    lines = [head, "-" * len(head)]
    for r in runs:
        c = r["cpu_us_per_delivery"]
        lines.append(f"{r['round']:>5} {r['case']:<8} {r['deliveries']:>6} {r['missing']:>4} "
                     f"{c['both']:>12.2f} {c['A']:>6.2f} {c['B']:>6.2f} "
                     f"{r['mesh_bytes_per_delivery']:>12.1f} {fmt(r['latency_ms']['p50'], '.2f'):>7} "
                     f"{fmt(r['latency_ms']['p99'], '.2f'):>7}")
    lines.append("-" * len(head))
    for case in ("direct", "relayed"):
        s = summary[case]
        c = s["cpu_us_per_delivery"]
        lines.append(f"{'all':>5} {case:<8} {s['deliveries']:>6} {s['missing']:>4} "
                     f"{c['both']:>12.2f} {c['A']:>6.2f} {c['B']:>6.2f} "
                     f"{s['mesh_bytes_per_delivery']:>12.1f} {s['latency_ms_p50_median']:>7.2f} "
                     f"{s['latency_ms_p99_median']:>7.2f}")
    rr = summary["relayed_over_direct_cpu"]
    lines.append(f"relayed/direct CPU per delivery, per round: "
                 f"{', '.join(f'{x:.2f}' for x in rr['per_round'])} (median {fmt(rr['median'], '.2f')})")
    lines.append("('all' rows: CPU and mesh bytes summed over rounds / deliveries; latency: median "
                 "of the rounds' p50 and p99)")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--binary", help="chatmesh binary (default: see the module docstring)")
    ap.add_argument("--clients", type=int, default=60)
    ap.add_argument("--rate", type=float, default=50.0, help="says per second of the one sender")
    ap.add_argument("--seconds", type=float, default=6.0, help="length of the measured window")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", help="JSON output (default bench/results/relay-cost-<date>.json)")
    ap.add_argument("--label", help="this run's key in the JSON's results (default: release, "
                                    "debug or given, after the binary)")
    args = ap.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="relay-cost-"))
    binary, binary_why = pick_binary(args.binary, workdir)
    label = args.label or binary_why.split(" ")[0].replace("copy", "debug")
    log(f"binary: {binary} ({binary_why}; label {label}); logs in {workdir}")

    atexit.register(stop_nodes)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    ports = free_ports(4)
    listen, mesh = ports[:2], ports[2:]
    conf = workdir / "cluster.conf"
    level = [] if os.environ.get("CHATMESH_LOG_LEVEL") else ["--log-level", "warning"]
    a, b = (NodeProcess(workdir, conf, name, lp, mp, args=["--threads", "1", *level])
            for name, lp, mp in (("A", listen[0], mesh[0]), ("B", listen[1], mesh[1])))
    for node in (a, b):
        node.binary = binary
        NODES.append(node)
    conf.write_text(config_text([a, b], fanout="mesh", secret="relay-cost-secret-0123456789",
                                sections={"limits": {"say_rate": 1000000, "say_burst": 1000000}},
                                writer="bench/relay_cost.py"))
    started = dt.datetime.now(dt.timezone.utc)
    runs: list[dict] = []
    try:
        a.start()
        b.start()
        deadline = time.monotonic() + 20
        while not (a.peers()[0] == ["B"] and b.peers()[0] == ["A"]):
            assert time.monotonic() < deadline, f"mesh link never came up: {a.peers()} {b.peers()}"
            time.sleep(0.05)
        log(f"A pid {a.pid} :{a.port}, B pid {b.pid} :{b.port}; mesh up; load {loadavg()}")
        for rnd in range(1, args.rounds + 1):
            order = ("direct", "relayed") if rnd % 2 else ("relayed", "direct")
            for case in order:
                r = run_case(case, rnd, a, b, args)
                runs.append(r)
                log(f"round {rnd} {case:<7}: {r['deliveries']}/{r['expected']} delivered, "
                    f"CPU {r['cpu_us_per_delivery']['both']:.2f} us/delivery "
                    f"(A {r['cpu_us_per_delivery']['A']:.2f}, B {r['cpu_us_per_delivery']['B']:.2f}), "
                    f"mesh {r['mesh_bytes_per_delivery']:.1f} B/delivery, "
                    f"p50 {fmt(r['latency_ms']['p50'], '.2f')} / p99 {fmt(r['latency_ms']['p99'], '.2f')} ms, "
                    f"relayed WS taken by A {r['relayed_websockets_taken_by_A']:.0f}")
                if r["missing"] or r["warmup_missing"]:
                    log(f"  MISSING: {r['missing']} deliveries in the window, "
                        f"{r['warmup_missing']} in the warm-up")
                time.sleep(1.0)  # the closed sessions' quits settle before the next window
        for node in (a, b):
            assert node.alive(), f"node {node.name} died:\n{node.log_text(4000)}"
    except BaseException:
        for node in (a, b):
            log(f"--- {node.name} log tail ---\n{node.log_text(3000)}")
        raise
    finally:
        stop_nodes()

    summary = summarize(runs)
    text = table(runs, summary)
    print(text)
    out = Path(args.out) if args.out else \
        REPO / "bench" / "results" / f"relay-cost-{started.strftime('%Y-%m-%d')}.json"
    record = {
        "script": "bench/relay_cost.py",
        "started_utc": started.isoformat(timespec="seconds"),
        "binary": str(binary), "binary_choice": binary_why,
        "binary_mtime_utc": dt.datetime.fromtimestamp(binary.stat().st_mtime, dt.timezone.utc)
        .isoformat(timespec="seconds"),
        "git_head": subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True,
                                   text=True).stdout.strip(),
        "params": {"clients": args.clients, "rate": args.rate, "seconds": args.seconds,
                   "rounds": args.rounds, "warmup_s": WARMUP_S, "node_threads": 1},
        "method": "polling handshake on A (owner) then WebSocket upgrade on A (direct) or B "
                  "(relayed); one sender direct on A; CPU utime+stime of both nodes over the "
                  "window; mesh bytes = both nodes' chatmesh_mesh_bytes_total{direction=out}; "
                  "cases alternate within each round on the same two processes",
        "machine": {"cpus": os.cpu_count(), "loadavg_at_end": loadavg()},
        "runs": runs, "summary": summary, "table": text,
    }
    # One file per day, one entry per binary label: a release and a debug run sit side by side.
    results = {}
    if out.exists():
        try:
            results = json.loads(out.read_text()).get("results", {})
        except (ValueError, AttributeError):
            results = {}
    results[label] = record
    out.write_text(json.dumps({"results": results}, indent=2) + "\n")
    log(f"wrote {out.relative_to(REPO) if out.is_relative_to(REPO) else out}")
    missing = sum(r["missing"] for r in runs)
    if missing:
        log(f"NOT ALL DELIVERED: {missing} missing")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
