"""Real nginx with a round-robin upstream (no ip_hash) in front of a 3-node mesh (issue 15):
every request of a session may reach any node, and the nodes relay it to the session's owner.

100 python-socketio clients through nginx, in 10 rooms, with mixed transports (long-polling
only, WebSocket only, and the default: polling, then the upgrade), join, say and leave; every
member of a room gets every say of that room exactly once, and no client ever sees
"Session ID unknown" (its logs, the replies it got, nginx's access log).
"""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from harness.cluster import teardown
from nginx_testkit import FAST_LIMITS, nginx_available, start_fronted_mesh, unique_room
from relay_testkit import (ClientLog, access_entries, node_of_upstream, node_tags, owner_of,
                           relay_counts, settle_room)

pytestmark = pytest.mark.skipif(not nginx_available(), reason="nginx not installed")

NAMES = ["a1", "a2", "a3"]
ROOMS = 10
PER_ROOM = 10
TRANSPORTS = {"polling": ["polling"], "websocket": ["websocket"], "default": None}
KINDS = list(TRANSPORTS)
WAIT_S = 15.0


@pytest.fixture(scope="module")
def fronted(request):
    mesh, front = start_fronted_mesh(teardown(request), NAMES, balance="round-robin",
                                     limits={**FAST_LIMITS, "max_connections": 1000})
    return mesh, front


def test_round_robin_front_has_no_ip_hash_and_every_node(fronted):
    mesh, front = fronted
    text = front.generated.read_text()
    upstream = re.search(r"upstream chatmesh \{(.*?)\}", text, re.S)
    assert upstream, text
    assert "ip_hash" not in upstream.group(1) and "hash " not in upstream.group(1), text
    assert "sticky" not in text
    for n in mesh.nodes.values():
        assert f"server {n.host}:{n.port} " in upstream.group(1), (n, text)


def test_hundred_clients_mixed_transports_chat_through_round_robin(fronted):
    mesh, front = fronted
    log = ClientLog()
    access_before = len(access_entries(front))
    relay_before = {n: relay_counts(mesh[n]) for n in NAMES}
    rooms = [unique_room(f"rr{r}") for r in range(ROOMS)]
    plan = [(rooms[r], f"u{r}-{i}-{KINDS[(r + i) % 3]}", KINDS[(r + i) % 3])
            for r in range(ROOMS) for i in range(PER_ROOM)]

    failed = []

    def make(entry):
        room, user, kind = entry
        c = mesh.sio(front.http, room, user, transports=TRANSPORTS[kind],
                     client_kw=log.client_kw(), connect=False)
        try:
            c.connect()
        except Exception as e:  # noqa: BLE001 - reported below with what the clients logged
            failed.append((user, repr(e)))
        return c

    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=25) as pool:
        clients = list(pool.map(make, plan))
    t_connected = time.monotonic() - t0
    assert not failed, (f"{len(failed)} clients failed to connect and join: {failed[:5]}; "
                        f"'Session ID unknown' {log.unknown_sid()[:10]}")
    by_room = {r: [c for c in clients if c.room == r] for r in rooms}
    kind_of = {c.username: kind for c, (_, _, kind) in zip(clients, plan)}

    # Every client in the transport it asked for; the default ones upgraded (through a relay
    # whenever the WebSocket reached another node than the handshake).
    transports = {c.username: c.sio.transport() for c in clients}
    wrong = {u: t for u, t in transports.items()
             if t != ("polling" if kind_of[u] == "polling" else "websocket")}
    assert not wrong, f"clients on the wrong transport: {wrong}; log {log.refusal_lines()[:10]}"
    tags = node_tags(mesh)
    owners = {}
    for c in clients:
        owner = owner_of(tags, c.sio.eio.sid)
        owners[owner] = owners.get(owner, 0) + 1
    probe_rounds = [settle_room(members, lambda c: owner_of(tags, c.sio.eio.sid))
                    for members in by_room.values()]

    # Every member's say reaches every member of its room exactly once, and no other room.
    t1 = time.monotonic()
    for c in clients:
        c.sio.emit("say", {"text": f"hello from {c.username}"})

    def complete(c):
        return len([s for s in c.says() if s[2].startswith("hello from ")]) >= PER_ROOM

    for c in clients:
        c.wait(lambda c=c: complete(c), WAIT_S, f"{c.username}: the says of its room")
    t_says = time.monotonic() - t1
    time.sleep(0.3)  # room for a duplicate to show
    for room, members in by_room.items():
        want = sorted(f"hello from {m.username}" for m in members)
        for c in members:
            got = sorted(t for _, _, t in c.says() if t.startswith("hello from "))
            assert got == want, f"{c.username} in {room}: got {got}, want {want}"

    # A member leaving is seen by the rest of its room.
    leavers = [members[0] for members in by_room.values()]
    for c in leavers:
        c.close()
    for members in by_room.values():
        for c in members[1:]:
            c.wait(lambda c=c, who=members[0].username: c.saw("broadcast_quit", who), WAIT_S,
                   f"{c.username}: quit of {members[0].username}")

    # Nobody was disconnected or had to reconnect; nobody was refused anything.
    reconnected = {c.username: (len(c.connects), c.disconnects) for c in clients
                   if c not in leavers and (len(c.connects) != 1 or c.disconnects)}
    entries = access_entries(front)[access_before:]
    refused = [e for e in entries if e["status"] >= 400]
    nodes_hit = {}
    for e in entries:
        n = node_of_upstream(mesh, e["upstream"])
        nodes_hit[n] = nodes_hit.get(n, 0) + 1
    relayed = {n: sum(v for v in relay_counts(mesh[n]).values()) -
               sum(v for v in relay_before[n].values()) for n in NAMES}
    relay_kinds = {}
    for n in NAMES:
        for (kind, result), v in relay_counts(mesh[n]).items():
            d = v - relay_before[n].get((kind, result), 0)
            if d:
                relay_kinds[(kind, result)] = relay_kinds.get((kind, result), 0) + d
    print(f"{len(clients)} clients ({ {k: sum(1 for x in plan if x[2] == k) for k in KINDS} }) "
          f"connected and joined in {t_connected:.1f} s; sessions by owner {owners}; room "
          f"interest settled in {max(probe_rounds)} probe round(s) at most; "
          f"{len(clients)} says x {PER_ROOM} members delivered in {t_says:.2f} s; nginx sent "
          f"{len(entries)} requests by node {nodes_hit}; relayed (both sides) {relayed} "
          f"{relay_kinds}; refusals {len(refused)}; client log lines {len(log.lines)}")
    assert not log.unknown_sid(), f"'Session ID unknown' in the clients: {log.unknown_sid()[:20]}"
    assert not log.refusals, f"replies the clients got refused: {log.refusals[:20]}"
    assert not refused, f"nginx answered {len(refused)} requests >= 400: {refused[:20]}"
    assert not reconnected, f"clients that were disconnected: {reconnected}"
    assert all(owners.get(n, 0) > 0 for n in NAMES), f"a node made no session: {owners}"
    assert all(nodes_hit.get(n, 0) > 0 for n in NAMES), nodes_hit
    assert all(relayed[n] > 0 for n in NAMES), f"a node relayed nothing: {relayed}"
    mesh.close_clients()   # the module's next test starts without them


def test_numbered_says_arrive_complete_and_in_order_through_round_robin(fronted):
    """Three senders (one per transport) through the round-robin front, 200 numbered says
    each, as fast as they go; six members (two per transport) get every sender's says
    complete and in order, although each sender's POSTs and each member's GETs are spread
    over the nodes."""
    mesh, front = fronted
    log = ClientLog()
    room = unique_room("order")
    n = 200
    members = [mesh.sio(front.http, room, f"m-{kind}-{i}", transports=TRANSPORTS[kind],
                        client_kw=log.client_kw()) for kind in KINDS for i in range(2)]
    senders = [mesh.sio(front.http, room, f"s-{kind}", transports=TRANSPORTS[kind],
                        client_kw=log.client_kw()) for kind in KINDS]
    everyone = members + senders
    tags = node_tags(mesh)
    settle_room(everyone, lambda c: owner_of(tags, c.sio.eio.sid))
    t0 = time.monotonic()
    for i in range(n):
        for s in senders:
            s.sio.emit("say", {"text": f"{s.username}:{i}"})

    def numbers(c, sender):
        return [int(t.split(":", 1)[1]) for _, u, t in c.says()
                if u == sender.username and t.startswith(f"{u}:")]   # not settle_room's probes

    for c in everyone:
        c.wait(lambda c=c: all(len(numbers(c, s)) >= n for s in senders), WAIT_S * 2,
               f"{c.username}: every numbered say")
    took = time.monotonic() - t0
    time.sleep(0.3)
    bad = {(c.username, s.username): numbers(c, s)[:10] for c in everyone for s in senders
           if numbers(c, s) != list(range(n))}
    print(f"{len(senders)} senders x {n} says to {len(everyone)} members through round-robin "
          f"nginx in {took:.2f} s; transports { {c.username: c.sio.transport() for c in everyone} }")
    assert not bad, f"incomplete or out of order: {bad}"
    assert not log.unknown_sid() and not log.refusals, (log.unknown_sid(), log.refusals)
