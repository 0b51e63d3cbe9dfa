"""The fault suite on a real network: three `chatmesh serve` processes, each in its own network
namespace, joined by a bridge (netns_testkit.py draws the topology). Partitions are pulled
cables at the switch, so links go silent instead of being reset, as in a real outage.

  1. a 3 s partition of one node while a sender on every node talks: after heal, every say
     reaches every member, in per-sender order;
  2. a 30 s partition: what fell out of the 5 s buffer is counted by both sides, exactly;
     nothing crashes; new says cross again within 5 s of heal;
  3. a client that never reads while its room is flooded: cut at the outbound bound, its
     connection released, the other members' p99 within 2x of runs without it;
  4. 15,000 connection attempts at one node with max_connections 2,000: every one is
     served or refused cleanly (HTTP 503 + reason), the node stays healthy;
  5. a node restarted with another [cluster] secret: refused by its peers, logged, nothing
     delivered through it either way (and back in the mesh with the right secret).

They run in the order 1, 2, 5, 4, 3: case 4's connection storm (on nodes of its own, in a
second topology) starts with case 2 and runs while 2 and 5 check counts and refusals; case 1,
whose no-loss margin is about a second with the default [mesh] settings, runs before it, and
case 3, which compares latencies, runs last, alone.

Cases 1, 2, 3 and 5 run with `[mesh] tls = on` (certificates from `chatmesh gen-certs`): every
mesh link is TLS 1.3 with node certificates, so partition, heal and the resend of what a peer
missed are proven over TLS; case 4's storm is on the client port and keeps a plaintext mesh.

Each case records what it measured with record_figure (printed in the summary of `make test`).
Needs root and `ip netns`; otherwise every case is skipped and the summary says why.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest
import requests

from chatmesh_testkit import FIGURES, chatmesh_binary, record_figure, sio_event, ws_frame
from harness.cluster import teardown
from harness.process import close_quietly
from mesh_testkit import (FAST_LIMITS, PacedSender, join_msg, numbered, quit_msg, says,
                          unique_room, wait_until)
from netns_testkit import (NetnsCluster, NetnsTopology, NetnsUnavailable, snapshot_binary,
                           unavailable_reason)

SUITE = "netns fault suite"
NAMES = ["n1", "n2", "n3"]  # n1 dials n2 and n3, n2 dials n3 (the smaller name dials)

SHORT_PARTITION_S = 3.0
LONG_PARTITION_S = 30.0
FLOW_AFTER_HEAL_MAX_S = 5.0
ATTEMPTS = 15_000
MAX_CONNECTIONS = 2_000


# --------------------------------------------------------------------------------------------
# Fixtures


def _topology(label: str) -> NetnsTopology:
    """A built topology, or a skip that says plainly why (also in the run's summary)."""
    reason = unavailable_reason()
    if reason is None:
        topology = NetnsTopology(len(NAMES), label=label)
        try:
            return topology.up()
        except (NetnsUnavailable, OSError, subprocess.SubprocessError) as e:
            reason = f"cannot build network namespaces here: {e}"
    if not any(w == SUITE and t.startswith("SKIPPED") for w, t in FIGURES):
        record_figure(SUITE, f"SKIPPED, {reason}")
    pytest.skip(f"{SUITE} skipped: {reason}")


def _down(topology: NetnsTopology):
    killed = topology.down()
    assert not killed, f"processes still ran in the namespaces at the end: {killed}"


@pytest.fixture(scope="module")
def chatmesh_snapshot():
    """The binary every node and `chatmesh bench` of this module run (see snapshot_binary)."""
    d = Path(tempfile.mkdtemp(prefix="chatmesh-netns-bin-"))
    try:
        yield snapshot_binary(chatmesh_binary(), d)
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def topo():
    topology = _topology("a")
    record_figure(SUITE, f"3 namespaces + switch up in {topology.setup_s:.2f}s "
                         f"(client links {topology.client_net}, mesh 10.99.0.0/24)"
                  + (f"; swept stale {topology.swept}" if topology.swept else ""))
    try:
        yield topology
    finally:
        _down(topology)


@pytest.fixture
def netns_mesh(request, topo, chatmesh_snapshot):
    """netns_mesh(limits=..., mesh=..., engineio=..., secret=..., tls=True) -> a started
    NetnsCluster of NAMES, its mesh TLS unless tls=False; clients closed, nodes stopped by pid
    and partitions healed at teardown."""
    td = teardown(request)
    td.extra_cleanups.append(topo.heal_all)

    def make(tls: bool = True, **kw) -> NetnsCluster:
        mesh = td.add(NetnsCluster(topo, NAMES, binary=chatmesh_snapshot, tls=tls, **kw)).start()
        assert ("tls = on" in mesh.conf_path.read_text()) == tls
        return mesh

    return make


# --------------------------------------------------------------------------------------------
# Helpers


def sequence_check(client, sender: str, n: int) -> dict:
    """What `client` got of the says "<sender>:0..n-1": counts, and whether what arrived is in
    order and exactly once."""
    got = numbered(client, sender)
    return {"got": len(got), "missing": n - len(set(got)), "in_order": got == sorted(set(got)),
            "missing_set": set(range(n)) - set(got)}


def counters(node, *names) -> dict:
    m = node.metrics()
    return {n: m.total(n) for n in names}


def parse_ws_frame(buf: bytes):
    """(opcode, payload, rest) of one unmasked server frame at the start of buf, or None."""
    if len(buf) < 2:
        return None
    op, n, i = buf[0] & 0x0F, buf[1] & 0x7F, 2
    if n == 126:
        if len(buf) < 4:
            return None
        n, i = int.from_bytes(buf[2:4], "big"), 4
    elif n == 127:
        if len(buf) < 10:
            return None
        n, i = int.from_bytes(buf[2:10], "big"), 10
    if len(buf) < i + n:
        return None
    return op, buf[i:i + n], buf[i + n:]


# --------------------------------------------------------------------------------------------
# 1. A short partition loses nothing


def test_3s_partition_loses_nothing_and_keeps_per_sender_order(netns_mesh):
    mesh = netns_mesh(limits=FAST_LIMITS)
    room = unique_room("part3")
    senders_c = {f"s{i}": mesh.client(f"n{i}", room) for i in (1, 2, 3)}
    readers = {"r1": mesh.client("n1", room), "r2": mesh.client("n2", room, ("polling",)),
               "r3": mesh.client("n3", room)}
    members = {**senders_c, **readers}
    for name, c in members.items():
        c.join(name)
    time.sleep(0.3)
    ups_before = {x: mesh[x].counter("chatmesh_mesh_link_ups_total", peer="n2")
                  for x in ("n1", "n3")}

    senders = [PacedSender(c, name, interval=0.02) for name, c in senders_c.items()]
    for s in senders:
        s.start()
    time.sleep(0.5)
    mesh.partition("n2")
    t_cut = time.monotonic()
    detected, max_buffered = {}, 0.0
    while time.monotonic() - t_cut < SHORT_PARTITION_S:
        for x in ("n1", "n3"):
            if x not in detected and "n2" in mesh[x].peers()[1]:
                detected[x] = time.monotonic() - t_cut
        max_buffered = max(max_buffered, sum(mesh[x].counter("chatmesh_mesh_pubs_buffered")
                                             for x in NAMES))
        time.sleep(0.05)
    mesh.heal("n2")
    t_heal = time.monotonic()
    at_heal = {s.name_: s.sent for s in senders}
    t_links = mesh.wait_mesh(timeout=15)
    wait_until(lambda: all(len(numbered(c, s)) >= n for c in members.values()
                           for s, n in at_heal.items()),
               timeout=15, what="every say sent before heal at every member")
    t_backlog = time.monotonic() - t_heal
    time.sleep(0.5)
    counts = {s.name_: s.stop() for s in senders}
    wait_until(lambda: all(len(numbered(c, s)) >= n for c in members.values()
                           for s, n in counts.items()),
               timeout=10, what="every say at every member")
    time.sleep(0.3)
    checks = {(m, s): sequence_check(c, s, n) for m, c in members.items()
              for s, n in counts.items()}
    lost = sum(v["missing"] for v in checks.values())
    relinked = {x: mesh[x].counter("chatmesh_mesh_link_ups_total", peer="n2") - ups_before[x]
                for x in ("n1", "n3")}
    m = {x: counters(mesh[x], "chatmesh_mesh_pubs_dropped_total",
                     "chatmesh_mesh_pubs_unconfirmed_total", "chatmesh_mesh_pubs_gap_total",
                     "chatmesh_mesh_pubs_duplicate_total") for x in NAMES}
    record_figure("case 1 (3 s partition, TLS mesh)",
                  f"n2 cut {SHORT_PARTITION_S:.0f}s while 3 senders said {counts} "
                  f"(to 6 members: {sum(counts.values()) * 6} deliveries); link declared down "
                  f"by {{{', '.join(f'{k}: {v:.1f}s' for k, v in detected.items())}}}; "
                  f"links re-established {relinked}; "
                  f"peak buffered {max_buffered:.0f}; links up {t_links:.2f}s and backlog "
                  f"delivered {t_backlog:.2f}s after heal; messages lost {lost}; "
                  f"resent duplicates filtered {sum(v['chatmesh_mesh_pubs_duplicate_total'] for v in m.values()):.0f}")
    bad = {k: {**v, "missing_set": sorted(v["missing_set"])[:10]} for k, v in checks.items()
           if v["missing"] or not v["in_order"] or v["got"] != counts[k[1]]}
    assert not bad, f"lost, duplicated or reordered (member, sender): {bad}"
    # Silence is noticed after 2-3 ping intervals (2-3 s by default), so in a 3 s partition
    # at least one link to n2 must have died and resumed (the resend path, not just TCP).
    assert any(v >= 1 for v in relinked.values()), \
        f"no link to n2 was re-established: {relinked} (declared down: {detected})"
    for x, v in m.items():
        assert v["chatmesh_mesh_pubs_dropped_total"] == 0, (x, v)
        assert v["chatmesh_mesh_pubs_unconfirmed_total"] == 0, (x, v)
        assert v["chatmesh_mesh_pubs_gap_total"] == 0, (x, v)


# --------------------------------------------------------------------------------------------
# 2. A long partition: bounded, counted, recovered


def test_30s_partition_drops_past_the_bound_are_counted_and_says_flow_within_5s(netns_mesh,
                                                                               storm):
    # `storm` (case 4) runs meanwhile on its own nodes: this case mostly waits.
    mesh = netns_mesh(limits=FAST_LIMITS)
    room = unique_room("part30")
    senders_c = {f"s{i}": mesh.client(f"n{i}", room) for i in (1, 2, 3)}
    readers = {"r1": mesh.client("n1", room), "r2": mesh.client("n2", room),
               "r3": mesh.client("n3", room)}
    members = {**senders_c, **readers}
    for name, c in members.items():
        c.join(name)
    time.sleep(0.3)
    side = {"s1": "n1", "r1": "n1", "s2": "n2", "r2": "n2", "s3": "n3", "r3": "n3"}
    pids = {x: mesh[x].proc.pid for x in NAMES}

    senders = [PacedSender(c, name, interval=0.05) for name, c in senders_c.items()]
    for s in senders:
        s.start()
    time.sleep(0.5)
    mesh.partition("n2")
    t_cut = time.monotonic()
    detected, max_buffered, first_drop = {}, 0.0, None
    while time.monotonic() - t_cut < LONG_PARTITION_S:
        for x in NAMES:
            peers_down = mesh[x].peers()[1]
            if x not in detected and peers_down:
                detected[x] = time.monotonic() - t_cut
        max_buffered = max(max_buffered, sum(mesh[x].counter("chatmesh_mesh_pubs_buffered")
                                             for x in NAMES))
        if first_drop is None and sum(mesh[x].counter("chatmesh_mesh_pubs_dropped_total") +
                                      mesh[x].counter("chatmesh_mesh_pubs_unconfirmed_total")
                                      for x in NAMES):
            first_drop = time.monotonic() - t_cut
        time.sleep(min(0.25, max(0.0, LONG_PARTITION_S - (time.monotonic() - t_cut))))
    mesh.heal("n2")
    t_heal = time.monotonic()
    at_heal = {s.name_: s.sent for s in senders}

    def crossed():  # a say sent after heal, across the former partition, in both directions
        return (all(any(k >= at_heal[s] for k in numbered(readers["r2"], s)) for s in ("s1", "s3"))
                and all(any(k >= at_heal["s2"] for k in numbered(readers[r], "s2"))
                        for r in ("r1", "r3")))
    t_flow = t_links = None
    while t_flow is None or t_links is None:
        now = time.monotonic() - t_heal
        assert now < 15, f"15 s after heal: new says across {t_flow}, links up {t_links}"
        if t_links is None and all(not mesh[x].peers()[1] for x in NAMES):
            t_links = now
        if t_flow is None and crossed():
            t_flow = now
        time.sleep(0.02)
    time.sleep(1.0)
    counts = {s.name_: s.stop() for s in senders}
    wait_until(lambda: all(numbered(c, s) and numbered(c, s)[-1] == n - 1
                           for c in members.values() for s, n in counts.items()),
               timeout=10, what="the last say of every sender at every member")
    time.sleep(0.3)

    checks = {(mb, s): sequence_check(c, s, n) for mb, c in members.items()
              for s, n in counts.items()}
    m = {x: counters(mesh[x], "chatmesh_mesh_pubs_dropped_total",
                     "chatmesh_mesh_pubs_unconfirmed_total", "chatmesh_mesh_pubs_gap_total")
         for x in NAMES}
    dropped = {x: m[x]["chatmesh_mesh_pubs_dropped_total"] for x in NAMES}
    unconf = {x: m[x]["chatmesh_mesh_pubs_unconfirmed_total"] for x in NAMES}
    gap = {x: m[x]["chatmesh_mesh_pubs_gap_total"] for x in NAMES}
    lost = {"n1->n2": checks[("r2", "s1")]["missing"], "n3->n2": checks[("r2", "s3")]["missing"],
            "n2->n1": checks[("r1", "s2")]["missing"], "n2->n3": checks[("r3", "s2")]["missing"]}
    record_figure("case 2 (30 s partition, TLS mesh)",
                  f"n2 cut {LONG_PARTITION_S:.0f}s, senders said {counts} (20/s each); "
                  f"messages lost {lost} (sent before heal {at_heal}); first drop counted "
                  f"{first_drop if first_drop is None else round(first_drop, 1)}s into the "
                  f"partition; peak buffered {max_buffered:.0f}; counters dropped {dropped} "
                  f"unconfirmed {unconf} gap {gap}; links up {t_links:.2f}s and new says "
                  f"across {t_flow:.2f}s after heal (limit {FLOW_AFTER_HEAL_MAX_S:.0f}s)")

    # Nothing crashed, nothing restarted, everyone is back.
    for x in NAMES:
        assert mesh[x].alive() and mesh[x].proc.pid == pids[x], f"{x} died or restarted"
        h = mesh[x].healthz()
        assert h["status"] == "ok" and not h["mesh"]["peers_down"], (x, h)
    # What arrived is in order and exactly once; between the connected sides nothing is lost.
    for (mb, s), v in checks.items():
        assert v["in_order"], f"{mb} got {s}'s says out of order or twice"
        if (side[mb] == "n2") == (s == "s2"):
            assert v["missing"] == 0, f"{mb} lost {v['missing']} of {s}'s says without a partition"
    # Members on one node miss the same says (one PUB per node, not per member).
    assert checks[("r2", "s1")]["missing_set"] == checks[("s2", "s1")]["missing_set"]
    assert checks[("r1", "s2")]["missing_set"] == checks[("s1", "s2")]["missing_set"]
    # The bound was passed, and every loss is counted: exactly by the receiver (gap), and by
    # the sender as dropped (never sent) <= lost <= dropped + unconfirmed (sent, never acked).
    assert all(v > 0 for v in lost.values()), f"30 s past a 5 s bound must drop: {lost}"
    assert gap["n2"] == lost["n1->n2"] + lost["n3->n2"], (gap, lost)
    assert gap["n1"] == lost["n2->n1"] and gap["n3"] == lost["n2->n3"], (gap, lost)
    for x, ls in (("n1", lost["n1->n2"]), ("n3", lost["n3->n2"]),
                  ("n2", lost["n2->n1"] + lost["n2->n3"])):
        assert dropped[x] <= ls <= dropped[x] + unconf[x], (x, ls, dropped, unconf)
    assert t_flow < FLOW_AFTER_HEAL_MAX_S, f"new says crossed only {t_flow:.2f}s after heal"


# --------------------------------------------------------------------------------------------
# 5. A node with the wrong secret


def rejects(node) -> dict:
    m = node.metrics()
    return {dict(k[1]).get("reason"): v for k, v in m.samples.items()
            if k[0] == "chatmesh_mesh_link_rejects_total"}


def test_node_restarted_with_another_secret_is_refused_and_relays_nothing(netns_mesh):
    mesh = netns_mesh()
    room = unique_room("secret")
    w2, w3 = mesh.client("n2", room), mesh.client("n3", room)
    w2.join("w2")
    w3.join("w3")
    before = {x: rejects(mesh[x]).get("auth", 0) for x in ("n2", "n3")}
    recv_before = {x: mesh[x].counter("chatmesh_mesh_pubs_received_total", peer="n1")
                   for x in ("n2", "n3")}
    rogue = mesh["n1"]  # it dials both others, so both verify its proof
    rogue.stop()
    rogue_conf = mesh.write_variant("rogue.conf",
                                    secret="not-the-cluster-secret-but-long-enough-to-be-used")
    t0 = time.monotonic()
    rogue.start(conf_path=rogue_conf)
    wait_until(lambda: all(rejects(mesh[x]).get("auth", 0) > before[x] for x in ("n2", "n3")),
               timeout=10, what="n2 and n3 to refuse n1")
    t_refused = time.monotonic() - t0
    x1 = mesh.client("n1", room)
    x1.join("x1")
    seen = {c: len(c.snapshot()) for c in (w2, w3)}
    x1.say("through the rogue node")
    w2.say("to the rogue node")
    wait_until(lambda: ("x1", "through the rogue node") in says(x1), what="x1's own echo")
    wait_until(lambda: ("w2", "to the rogue node") in says(w3), what="n2 -> n3 still flows")
    time.sleep(1.0)
    leaked_out = [e for c in (w2, w3) for e in c.snapshot()[seen[c]:]
                  if "x1" in json.dumps(e)]
    leaked_in = [t for u, t in says(x1) if u != "x1"]
    recv = {x: mesh[x].counter("chatmesh_mesh_pubs_received_total", peer="n1") - recv_before[x]
            for x in ("n2", "n3")}
    logged = {x: mesh[x].log_text(200000).count("authentication failed") for x in ("n2", "n3")}
    after = {x: rejects(mesh[x]).get("auth", 0) for x in ("n2", "n3")}
    rogue_mesh = rogue.healthz()["mesh"]
    peers_mesh = {x: mesh[x].healthz()["mesh"] for x in ("n2", "n3")}

    # Positive control: the same node with the right secret is back and relays.
    x1.disconnect()
    rogue.stop()
    t1 = time.monotonic()
    rogue.start(conf_path=mesh.conf_path)
    mesh.wait_mesh(timeout=10)
    t_back = time.monotonic() - t1
    y1 = mesh.client("n1", room)
    y1.join("y1")
    y1.say("with the right secret")
    wait_until(lambda: all(("y1", "with the right secret") in says(c) for c in (w2, w3)),
               what="n1's say after the right secret")
    record_figure("case 5 (changed secret, TLS mesh)",
                  f"n1 restarted with another secret: refused by n2 and n3 within "
                  f"{t_refused:.2f}s of its start (auth rejects {before} -> {after}, "
                  f"'authentication failed' logged {logged}); n1 peers_up "
                  f"{rogue_mesh['peers_up']}; delivered through it: out {len(leaked_out)}, "
                  f"in {len(leaked_in)}, PUBs accepted from it {recv}; with the right secret "
                  f"back in the mesh {t_back:.2f}s after restart")
    assert rogue_mesh["peers_up"] == [] and sorted(rogue_mesh["peers_down"]) == ["n2", "n3"], \
        rogue_mesh
    for x, h in peers_mesh.items():
        assert "n1" in h["peers_down"] and "n1" not in h["peers_up"], (x, h)
    assert all(v >= 1 for v in logged.values()), logged
    assert leaked_out == [] and leaked_in == [], (leaked_out, leaked_in)
    assert recv == {"n2": 0, "n3": 0}, recv
# --------------------------------------------------------------------------------------------
# 4. 15,000 connection attempts


# The refusal: HTTP 503 with this body (polling, and WebSocket before the upgrade); a WebSocket
# that raced past that check is upgraded and then closed with 1013 and the reason below.
REFUSAL = b'{"code":3,"message":"Too many connections"}'
WS_REFUSAL = (1013).to_bytes(2, "big") + b"too many connections"


class _Attempt:
    """One Engine.IO open on a non-blocking socket: connect, send the request, read the
    answer until it says served or refused."""

    __slots__ = ("sock", "polling", "buf", "started", "request")

    def __init__(self, addr, polling: bool, request: bytes):
        self.polling = polling
        self.buf = b""
        self.started = time.monotonic()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setblocking(False)
        self.sock.connect_ex(addr)
        self.request = request  # None once sent

    def verdict(self):
        """None while more bytes are needed; else (outcome, detail, sid-or-None)."""
        head, sep, rest = self.buf.partition(b"\r\n\r\n")
        if not sep:
            return None
        status = head.split(b"\r\n", 1)[0]
        kind = "polling" if self.polling else "websocket"
        if self.polling or not status.startswith(b"HTTP/1.1 101"):
            length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            if len(rest) < length:
                return None
            body = rest[:length]
            if self.polling and status.startswith(b"HTTP/1.1 200") and body.startswith(b"0{"):
                return "served", "polling", json.loads(body[1:])["sid"]
            if status.startswith(b"HTTP/1.1 503") and body == REFUSAL:
                return "refused", f"{kind} 503", None
            return "other", f"{kind} {status!r} {body[:100]!r}", None
        fr = parse_ws_frame(rest)
        if fr is None:
            return None
        op, payload, _ = fr
        if op == 0x1 and payload.startswith(b"0{"):
            return "served", "websocket", None
        if op == 0x8 and payload == WS_REFUSAL:
            return "refused", "websocket 101 + close 1013", None
        return "other", f"websocket frame op {op} {payload[:100]!r}", None


def storm_attempts(host: str, port: int, n: int, concurrency: int, held: list,
                   timeout: float = 30.0) -> dict:
    """n Engine.IO opens at host:port, `concurrency` at a time, 1 in 10 polling; returns
    {(outcome, detail): count} with outcome "served" | "refused" | "other". Served WebSockets
    stay open and polling sids are kept (both in `held`), so the node stays at its limit.
    Plain non-blocking sockets and epoll: asyncio would cost the test process 3x the CPU."""
    import selectors
    addr = (host, port)
    ws_req = ("GET /socket.io/?EIO=4&transport=websocket&roomid=storm HTTP/1.1\r\n"
              f"Host: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              "Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
    poll_req = (f"GET /socket.io/?EIO=4&transport=polling&roomid=storm HTTP/1.1\r\n"
                f"Host: {host}:{port}\r\n\r\n").encode()
    sel = selectors.DefaultSelector()
    outcomes: dict[tuple[str, str], int] = {}
    started = 0
    live = 0

    def count(kind, detail):
        outcomes[(kind, detail)] = outcomes.get((kind, detail), 0) + 1

    def finish(a: _Attempt, kind: str, detail: str, sid=None):
        nonlocal live
        sel.unregister(a.sock)
        live -= 1
        count(kind, detail)
        if kind == "served":
            held.append(("polling", sid) if a.polling else ("websocket", a.sock))
            if a.polling:
                a.sock.close()
        else:
            a.sock.close()

    try:
        while started < n or live:
            while started < n and live < concurrency:
                polling = started % 10 == 0
                req = poll_req if polling else ws_req.replace(
                    "{key}", base64.b64encode(os.urandom(16)).decode()).encode()
                a = _Attempt(addr, polling, req)
                sel.register(a.sock, selectors.EVENT_WRITE, a)
                started += 1
                live += 1
            now = time.monotonic()
            for key, mask in sel.select(timeout=0.5):
                a = key.data
                if a.request is not None:  # connected (or failed): send the request
                    err = a.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        finish(a, "other", f"connect: {os.strerror(err)}")
                        continue
                    try:
                        a.sock.send(a.request)
                    except OSError as e:
                        finish(a, "other", f"send: {e!r}")
                        continue
                    a.request = None
                    sel.modify(a.sock, selectors.EVENT_READ, a)
                    continue
                try:
                    chunk = a.sock.recv(65536)
                except OSError as e:
                    finish(a, "other", f"recv: {e!r}")
                    continue
                if not chunk:
                    finish(a, "other", f"EOF after {a.buf[:120]!r}")
                    continue
                a.buf += chunk
                v = a.verdict()
                if v is not None:
                    finish(a, *v)
            for key in list(sel.get_map().values()):
                if now - key.data.started > timeout:
                    finish(key.data, "other", f"no answer within {timeout:.0f}s")
    finally:
        for key in list(sel.get_map().values()):
            key.fileobj.close()
        sel.close()
    return outcomes


def release_held(host: str, port: int, held: list):
    """Closes every held session: WebSocket, by closing the socket; polling, by POST `1`."""
    http = requests.Session()
    for kind, h in held:
        if kind == "websocket":
            h.close()
        else:
            http.post(f"http://{host}:{port}/socket.io/?EIO=4&transport=polling&roomid=storm"
                      f"&sid={h}", data=b"1", headers={"Content-Type": "text/plain"}, timeout=10)
    held.clear()
    http.close()


# The held sessions must not time out while the storm and the case around it run: a long
# Engine.IO heartbeat and CONNECT deadline (the storm's clients never answer either).
STORM_ENGINEIO = {"ping_interval": 300000, "connect_timeout": 300000}


class Storm:
    """Case 4, run in a thread: ATTEMPTS Engine.IO opens (1 in 10 polling, 200 in flight) at
    n1 of its own cluster (topology "b", so it does not share a node with any other case),
    while another thread samples n1's /healthz. The served ones are held open."""

    def __init__(self, mesh: NetnsCluster):
        self.mesh = mesh
        self.node = mesh["n1"]
        self.held: list = []
        self.outcomes: dict = {}
        self.error: BaseException | None = None
        self.health: list[tuple[int, float]] = []  # (HTTP status or 0, seconds)
        self.took = 0.0
        self.done = threading.Event()
        self.ups_before = {x: self.node.counter("chatmesh_mesh_link_ups_total", peer=x)
                           for x in ("n2", "n3")}
        self.errors_before = self.node.counter("chatmesh_errors_total", reason="max_connections")
        self.thread = threading.Thread(target=self._run, daemon=True, name="storm")
        self.sampler = threading.Thread(target=self._sample, daemon=True, name="storm-health")

    def start(self) -> "Storm":
        self.thread.start()
        self.sampler.start()
        return self

    def _run(self):
        t0 = time.monotonic()
        try:
            self.outcomes = storm_attempts(self.node.host, self.node.port, ATTEMPTS, 200,
                                           self.held)
        except BaseException as e:  # noqa: BLE001 - reported by the test
            self.error = e
        self.took = time.monotonic() - t0
        self.done.set()

    def _sample(self):
        while not self.done.is_set():
            t = time.monotonic()
            try:
                code = requests.get(self.node.http + "/healthz", timeout=10).status_code
            except requests.RequestException:
                code = 0
            self.health.append((code, time.monotonic() - t))
            self.done.wait(0.25)

    def wait(self, timeout: float) -> "Storm":
        assert self.done.wait(timeout), f"the storm is still running after {timeout}s"
        self.sampler.join(timeout=15)
        return self

    def release(self):
        release_held(self.node.host, self.node.port, self.held)

    def close(self):
        for kind, h in self.held:
            if kind == "websocket":
                h.close()
        self.held.clear()


@pytest.fixture(scope="module")
def storm(request, topo, chatmesh_snapshot):
    """Started by the 30 s partition case, which mostly waits, and checked by case 4: the
    suite's two longest cases overlap instead of adding up (on separate nodes)."""
    topology = _topology("b")
    td = teardown(request)
    td.extra_cleanups.append(lambda: _down(topology))
    mesh = td.add(NetnsCluster(topology, NAMES, binary=chatmesh_snapshot,
                               limits={"max_connections": MAX_CONNECTIONS},
                               engineio=STORM_ENGINEIO))
    s = None
    try:
        mesh.start()
        s = Storm(mesh).start()
        yield s
    finally:
        if s is not None:
            s.done.wait(120)
            s.close()


def test_15000_connection_attempts_are_served_or_refused_cleanly(storm):
    s = storm.wait(timeout=180)
    node, mesh = s.node, s.mesh
    assert s.error is None, f"the storm failed: {s.error!r}"
    h_full = node.healthz()  # at the limit, the node still answers
    refused_metric = node.counter("chatmesh_errors_total",
                                  reason="max_connections") - s.errors_before
    relinked = {x: node.counter("chatmesh_mesh_link_ups_total", peer=x) - s.ups_before[x]
                for x in ("n2", "n3")}
    t0 = time.monotonic()
    s.release()
    drained = wait_until(lambda: (h := node.healthz())["connections"] == 0 and h, timeout=15,
                         what="n1 back to 0 connections")
    t_release = time.monotonic() - t0
    served = sum(v for (k, _), v in s.outcomes.items() if k == "served")
    refused = sum(v for (k, _), v in s.outcomes.items() if k == "refused")
    other = {d: v for (k, d), v in s.outcomes.items() if k == "other"}
    by_kind = {f"{k} {d}": v for (k, d), v in sorted(s.outcomes.items())}
    bad_health = [c for c, _ in s.health if c != 200]
    slowest = max((t for _, t in s.health), default=0.0)
    record_figure("case 4 (15,000 connection attempts)",
                  f"{ATTEMPTS} attempts (1 in 10 polling, 200 in flight) in {s.took:.1f}s "
                  f"({ATTEMPTS / s.took:.0f}/s) at n1 with max_connections {MAX_CONNECTIONS}: "
                  f"served {served}, refused {refused}, other {sum(other.values())} ({by_kind}); "
                  f"refusals counted by n1 {refused_metric:.0f}; /healthz during the storm "
                  f"{len(s.health)} polls, {len(bad_health)} not 200, slowest {slowest * 1000:.0f} ms; "
                  f"at the limit {h_full['status']} connections={h_full['connections']}; n1's mesh "
                  f"links re-established meanwhile {relinked}; all released, 0 connections "
                  f"after {t_release:.1f}s")
    assert not other, f"attempts neither served nor cleanly refused: {other}"
    assert served + refused == ATTEMPTS
    assert served == MAX_CONNECTIONS, "served ones were held open, so exactly the limit"
    assert refused_metric == refused
    assert not bad_health, f"/healthz failed during the storm: {bad_health}"
    assert h_full["status"] == "ok" and h_full["connections"] == MAX_CONNECTIONS, h_full
    assert drained["status"] == "ok"
    # After the storm: a new client chats across the mesh.
    room = unique_room("after-storm")
    a, b = mesh.client("n1", room), mesh.client("n3", room)
    a.join("a")
    b.join("b")
    time.sleep(0.2)
    a.say("after the storm")
    wait_until(lambda: ("a", "after the storm") in says(b), what="a say after the storm")
    for x in NAMES:
        assert mesh[x].alive() and mesh[x].healthz()["status"] == "ok"


# --------------------------------------------------------------------------------------------
# 3. A client that never reads


SLOW_LIMITS = {"say_rate": 100000, "say_burst": 100000, "outbound_buffer": 262144}
BENCH_ARGS = ["--clients", "9", "--rooms", "1", "--senders", "3", "--rate", "40",
              "--payload", "2000", "--warmup", "0.2", "--duration", "2.0", "--drain", "1.5",
              "--connect-rate", "0", "--json-only"]
BENCH_PAIRS = 4


class NeverReads:
    """A WebSocket Socket.IO member that joins `room` and then never reads again (a 4 KB
    receive buffer, so the server's queue for it fills)."""

    def __init__(self, node, room: str, name: str):
        self.name = name
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.settimeout(5)
        self.sock.connect((node.host, node.port))
        self.local_port = self.sock.getsockname()[1]
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET /socket.io/?EIO=4&transport=websocket&roomid={room} HTTP/1.1\r\n"
                           f"Host: {node.host}:{node.port}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                           f"Sec-WebSocket-Version: 13\r\n\r\n").encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = self.sock.recv(4096)
            assert chunk, buf
            buf += chunk
        head, self.buf = buf.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101"), head
        self.sock.sendall(ws_frame(0x1, b"40"))
        self.sock.sendall(ws_frame(0x1, sio_event("join", {"username": name}).encode()))
        want = sio_event("message", join_msg(name)).encode()
        while True:  # read up to its own join, then never again
            fr = parse_ws_frame(self.buf)
            if fr is None:
                chunk = self.sock.recv(4096)
                assert chunk, "closed before the join"
                self.buf += chunk
                continue
            _, payload, self.buf = fr
            if payload == want:
                break

    def close(self):
        close_quietly(self.sock)


def settle_interest(probe, watcher, name: str) -> None:
    """Until `watcher`'s node has told the probe's node about its member, a join there is not
    forwarded to it (a race a loaded host can lose: the SUB is read after the join is
    published). The probe's join seen by the watcher proves it; the probe leaves before the
    measured run, so the watcher's view of that run is unchanged."""
    probe.join(name)
    watcher.wait_for(lambda evs: ("message", join_msg(name)) in evs, what=f"{name}'s join")
    probe.disconnect()
    watcher.wait_for(lambda evs: ("message", quit_msg(name)) in evs, what=f"{name}'s quit")


def run_bench(mesh, prefix: str) -> dict:
    # The load generator runs at a higher priority than the other test suites that `make test`
    # runs beside this one (this suite runs as root): starved for a second, its clients stop
    # reading and the nodes rightly cut them at their outbound bound, which measures the
    # machine, not the node. CI saw that once: 4 of 9 clients cut in a run without the slow one.
    cmd = ["nice", "-n", "-5", str(mesh["n1"].binary or chatmesh_binary()), "bench", "--targets",
           ",".join(mesh.target(x) for x in NAMES), "--room-prefix", prefix, *BENCH_ARGS]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr[-2000:]
    line = [x for x in r.stdout.splitlines() if x.startswith("{")][-1]
    return json.loads(line)


def test_client_that_never_reads_is_cut_and_others_p99_stays_within_2x(netns_mesh, topo):
    mesh = netns_mesh(limits=SLOW_LIMITS)
    bound = SLOW_LIMITS["outbound_buffer"]
    runs = {"without": [], "with": []}
    cuts = []
    for i in range(BENCH_PAIRS):
        for kind in ("without", "with") if i % 2 == 0 else ("with", "without"):
            prefix = unique_room(f"flood{i}{kind[0]}")
            room = prefix + "0"  # bench's room 0
            # A python member on n2 in both kinds of run (so both carry its cost): it sees
            # the slow member's join and, when it is cut, its quit.
            watcher = mesh.client("n2", room)
            watcher.join(f"watch{i}{kind[0]}")
            settle_interest(mesh.client("n1", room), watcher, f"probe{i}{kind[0]}")
            slow = None
            if kind == "with":
                slow = NeverReads(mesh["n1"], room, f"slow{i}")
                overflow_before = mesh["n1"].counter("chatmesh_errors_total",
                                                     reason="outbound_overflow")
            try:
                res = run_bench(mesh, prefix)
                runs[kind].append(res)
                counts = {k: res[k] for k in ("connected", "joined", "disconnects", "lost",
                                              "duplicated", "reordered", "error_events")}
                assert counts == {"connected": 9, "joined": 9, "disconnects": 0, "lost": 0,
                                  "duplicated": 0, "reordered": 0, "error_events": 0}, \
                    f"{kind} run {i}: {counts}; p99 {res['latency_p99_ms']} ms"
                if slow is None:
                    continue
                wait_until(lambda: ("message", quit_msg(slow.name)) in watcher.snapshot(),
                           timeout=5, what=f"{slow.name} to be cut (its quit at a member)")
                ev = watcher.snapshot()
                j0 = ev.index(("message", join_msg(slow.name)))
                j1 = ev.index(("message", quit_msg(slow.name)))
                # Bytes queued for the slow member between its join and its cut: every
                # broadcast in between, as WebSocket text frames (4-byte header).
                queued = sum(len(sio_event(e, a).encode()) + 4 for e, a in ev[j0 + 1:j1])
                overflow = mesh["n1"].counter("chatmesh_errors_total",
                                              reason="outbound_overflow") - overflow_before
                released = wait_until(
                    lambda: not [s for s, peer in topo.tcp_states(1, mesh["n1"].port)
                                 if s == "ESTAB" and peer.endswith(f":{slow.local_port}")],
                    timeout=5, interval=0.1, what="n1 to release the cut client's connection")
                cuts.append({"queued": queued, "overflow": overflow, "released": released})
            finally:
                if slow is not None:
                    slow.close()
                watcher.disconnect()

    p99 = {k: [r["latency_p99_ms"] for r in v] for k, v in runs.items()}
    med = {k: statistics.median(v) for k, v in p99.items()}
    best = {k: min(v) for k, v in p99.items()}
    record_figure("case 3 (never-reading client)",
                  f"flood 3x40 says/s of 2000 B to 9 members on 3 nodes + a never-reading "
                  f"member on n1 (outbound_buffer {bound}): cut after "
                  f"{[c['queued'] for c in cuts]} bytes queued for it; others' p99 ms without "
                  f"{p99['without']} with {p99['with']}: best {best['without']:.1f} -> "
                  f"{best['with']:.1f} ms ({best['with'] / best['without']:.2f}x), median "
                  f"{med['without']:.1f} -> {med['with']:.1f} ms "
                  f"({med['with'] / med['without']:.2f}x)")
    assert len(cuts) == BENCH_PAIRS
    for c in cuts:
        assert c["overflow"] == 1, cuts
        assert bound <= c["queued"] <= bound + 4 * 1048576, \
            f"cut after {c['queued']} bytes queued (bound {bound} + kernel buffers)"
    # Other processes on this 2-core machine only ever add latency, in bursts that can double
    # one run's p99 (see the figures): the best run of each kind is the one least disturbed, so
    # the comparison is best against best (every "with" run had its slow member until the cut).
    assert best["with"] <= 2 * best["without"], \
        f"p99 with a never-reading member {best['with']:.1f} ms > 2 x {best['without']:.1f} ms"
    for x in NAMES:
        assert mesh[x].healthz()["status"] == "ok"


