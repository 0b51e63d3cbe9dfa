#!/usr/bin/env python3
"""CPU per delivery with connection-state recovery on against off, measured with a client that is
not `chatmesh bench` (a second, independent measurement of the `mesh-recovery` column).

    python3 bench/recovery_cost.py [--binary PATH] [--clients 60] [--rate 50] [--seconds 6] [--rounds 4]

Two 2-node meshes side by side from two cluster.conf files, `[recovery] enabled = off` and `on`
(`--threads 1` per node). In each round, on each mesh, N WebSocket clients join a fresh room on
node A (python websocket-client threads, the members of bench/relay_cost.py, "direct" case) and
one sender on A says at --rate per second for --seconds. Server CPU is utime+stime of BOTH nodes
of that mesh over the window (with recovery on, B receives, logs and stamps every message too:
that replication is part of the cost). Rounds alternate which mesh goes first, so a noisy machine
loads both about alike; the on/off ratio of each round is printed. Results go to
bench/results/recovery-cost-<UTC date>.json. Every process is stopped by pid, also on failure.
"""

from __future__ import annotations

import argparse
import atexit
import datetime as dt
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import relay_cost  # noqa: E402  (re-executes under .venv when websocket-client is missing)
from relay_cost import NODES, NodeProcess, config_text, free_ports, loadavg, log, pick_binary, run_case, stop_nodes  # noqa: E402

REPO = relay_cost.REPO


def start_mesh(workdir: Path, binary: Path, recovery: str) -> tuple[NodeProcess, NodeProcess]:
    ports = free_ports(4)
    conf = workdir / f"cluster-{recovery}.conf"
    level = [] if os.environ.get("CHATMESH_LOG_LEVEL") else ["--log-level", "warning"]
    a, b = (NodeProcess(workdir, conf, f"{name}{recovery}", lp, mp, args=["--threads", "1", *level])
            for name, lp, mp in (("A", ports[0], ports[2]), ("B", ports[1], ports[3])))
    for node in (a, b):
        node.binary = binary
        NODES.append(node)
    conf.write_text(config_text([a, b], fanout="mesh", secret="recovery-cost-secret-0123456789",
                                sections={"limits": {"say_rate": 1000000, "say_burst": 1000000},
                                          "recovery": {"enabled": recovery}},
                                writer="bench/recovery_cost.py"))
    a.start()
    b.start()
    deadline = time.monotonic() + 20
    while not (a.peers()[0] == [b.name] and b.peers()[0] == [a.name]):
        assert time.monotonic() < deadline, f"mesh link never came up: {a.peers()} {b.peers()}"
        time.sleep(0.05)
    return a, b


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--binary", help="chatmesh binary (default: as bench/relay_cost.py picks it)")
    ap.add_argument("--clients", type=int, default=60)
    ap.add_argument("--rate", type=float, default=50.0)
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--out", help="JSON output (default bench/results/recovery-cost-<date>.json)")
    args = ap.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="recovery-cost-"))
    binary, why = pick_binary(args.binary, workdir)
    log(f"binary: {binary} ({why}); logs in {workdir}")
    atexit.register(stop_nodes)
    started = dt.datetime.now(dt.timezone.utc)
    runs: list[dict] = []
    try:
        meshes = {mode: start_mesh(workdir, binary, mode) for mode in ("off", "on")}
        for rnd in range(1, args.rounds + 1):
            for mode in (("off", "on") if rnd % 2 else ("on", "off")):
                a, b = meshes[mode]
                r = run_case("direct", rnd, a, b, args)
                r["recovery"] = mode
                runs.append(r)
                log(f"round {rnd} recovery {mode:<3}: {r['deliveries']}/{r['expected']} delivered, "
                    f"CPU {r['cpu_us_per_delivery']['both']:.2f} us/delivery "
                    f"(A {r['cpu_us_per_delivery']['A']:.2f}, B {r['cpu_us_per_delivery']['B']:.2f}), "
                    f"p50 {r['latency_ms']['p50']:.2f} ms, load {r['loadavg']}")
                time.sleep(1.0)
        for node in NODES:
            assert node.alive(), f"node {node.name} died:\n{node.log_text(4000)}"
    finally:
        stop_nodes()

    ratios = []
    for rnd in range(1, args.rounds + 1):
        pair = {r["recovery"]: r for r in runs if r["round"] == rnd}
        ratios.append(pair["on"]["cpu_us_per_delivery"]["both"] / pair["off"]["cpu_us_per_delivery"]["both"])
    summary = {}
    for mode in ("off", "on"):
        rs = [r for r in runs if r["recovery"] == mode]
        d = sum(r["deliveries"] for r in rs) or 1
        summary[mode] = {"cpu_us_per_delivery": sum(r["cpu_us"]["both"] for r in rs) / d,
                         "missing": sum(r["missing"] for r in rs),
                         "latency_ms_p50_median": statistics.median(r["latency_ms"]["p50"] for r in rs)}
    summary["on_over_off"] = {"per_round": ratios, "median": statistics.median(ratios)}
    print(f"recovery off: {summary['off']['cpu_us_per_delivery']:.2f} us/delivery, "
          f"on: {summary['on']['cpu_us_per_delivery']:.2f} us/delivery; on/off per round "
          f"{', '.join(f'{x:.2f}' for x in ratios)} (median {summary['on_over_off']['median']:.2f})")
    out = Path(args.out) if args.out else \
        REPO / "bench" / "results" / f"recovery-cost-{started.strftime('%Y-%m-%d')}.json"
    out.write_text(json.dumps({"script": "bench/recovery_cost.py", "started_utc": started.isoformat(timespec="seconds"),
                               "binary": str(binary), "binary_choice": why,
                               "params": vars(args), "runs": runs, "summary": summary,
                               "machine": {"cpus": os.cpu_count(), "loadavg_at_end": loadavg()}}, indent=2) + "\n")
    log(f"wrote {out}")
    missing = summary["off"]["missing"] + summary["on"]["missing"]
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
