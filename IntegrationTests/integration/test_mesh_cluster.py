"""A 3-node broker-free mesh: the chat protocol across nodes, interest-based forwarding, and
per-sender order under load. One cluster (a1, a2, a3) serves the whole module; each test uses
its own rooms."""

import time

import pytest

from harness.clients import blast
from mesh_testkit import (FAST_LIMITS, module_mesh, numbered, says, unique_room, wait_until)
from chatmesh_testkit import join_msg, quit_msg, say_msg

M = "message"
SETTLE = 0.3  # s for a SUB to reach the other nodes after a room's first local join


@pytest.fixture(scope="module")
def mesh(request):
    c = module_mesh(request, ["a1", "a2", "a3"], limits=FAST_LIMITS)
    print(f"\n3-node mesh up: {[repr(n) for n in c.nodes.values()]}")
    return c


def received(node, peer):
    return node.counter("chatmesh_mesh_pubs_received_total", peer=peer)


def test_three_nodes_link_to_each_other(mesh):
    for n in mesh.nodes.values():
        h = n.healthz()
        others = sorted(x for x in mesh.nodes if x != n.name)
        assert h["mesh"] == {"peers_up": others, "peers_down": []}, h
        assert n.metrics().get("chatmesh_mesh_peers_up") == 2
    print("every node: peers_up =", {n: mesh[n].peers()[0] for n in mesh.nodes})


def test_join_say_quit_reach_members_on_every_node(mesh):
    room = unique_room("xnode")
    alice = mesh.client("a1", room)
    bob = mesh.client("a2", room)
    carol = mesh.client("a3", room)
    alice.join("alice")
    time.sleep(SETTLE)
    bob.join("bob")
    alice.wait_count(2)
    time.sleep(SETTLE)
    carol.join("carol")
    alice.wait_count(3)
    bob.wait_count(2)
    # Each say reaches every member before the next is said: says of different senders travel
    # different links, so only then is one order expected everywhere.
    alice.say("from a1")
    for member, count in ((alice, 4), (bob, 3), (carol, 2)):
        member.wait_count(count)
    bob.say("from a2")
    for member, count in ((alice, 5), (bob, 4), (carol, 3)):
        member.wait_count(count)
    carol.say("from a3")
    alice.wait_count(6)
    carol.disconnect()
    got_a = alice.wait_count(7)
    got_b = bob.wait_count(6)
    says3 = [(M, say_msg("alice", "from a1")), (M, say_msg("bob", "from a2")),
             (M, say_msg("carol", "from a3"))]
    assert got_a == [(M, join_msg("alice")), (M, join_msg("bob")), (M, join_msg("carol"))] + \
        says3 + [(M, quit_msg("carol"))]
    assert got_b == [(M, join_msg("bob")), (M, join_msg("carol"))] + says3 + \
        [(M, quit_msg("carol"))]
    assert carol.snapshot() == [(M, join_msg("carol"))] + says3
    print(f"alice@a1 got {len(got_a)} messages, bob@a2 {len(got_b)}, carol@a3 "
          f"{len(carol.snapshot())}: joins, says and the quit crossed every node")


def test_rooms_are_isolated_across_nodes(mesh):
    r1, r2 = unique_room("iso1"), unique_room("iso2")
    # r1 on a1 + a2, r2 on a2 + a3: a2 has both rooms, a3 only r2, a1 only r1.
    x1 = mesh.client("a1", r1)
    x2 = mesh.client("a2", r1)
    y2 = mesh.client("a2", r2)
    y3 = mesh.client("a3", r2)
    for c, n in ((x1, "x1"), (x2, "x2"), (y2, "y2"), (y3, "y3")):
        c.join(n)
    time.sleep(SETTLE)
    base = {c: len(c.snapshot()) for c in (x1, x2, y2, y3)}
    x1.say("only r1 (from a1)")
    y3.say("only r2 (from a3)")
    x2.say("only r1 (from a2)")
    y2.say("only r2 (from a2)")
    r1_says = {("x1", "only r1 (from a1)"), ("x2", "only r1 (from a2)")}
    r2_says = {("y3", "only r2 (from a3)"), ("y2", "only r2 (from a2)")}
    for c in (x1, x2):
        wait_until(lambda c=c: set(says(c)) >= r1_says, what="r1 says")
    for c in (y2, y3):
        wait_until(lambda c=c: set(says(c)) >= r2_says, what="r2 says")
    time.sleep(0.3)  # anything misrouted would have arrived by now
    for c in (x1, x2):
        assert set(says(c)) == r1_says, says(c)
    for c in (y2, y3):
        assert set(says(c)) == r2_says, says(c)
    for c in (x1, x2, y2, y3):
        names = {a["data"]["username"] for e, a in c.snapshot() if e == M}
        assert names <= ({"x1", "x2"} if c in (x1, x2) else {"y2", "y3"}), c.snapshot()
        assert len(c.snapshot()) - base[c] == 2
    print("r1 members saw only r1's 2 says, r2 members only r2's 2 says")


def test_node_without_members_receives_no_pub_frames(mesh):
    room = unique_room("nointerest")
    other = unique_room("a3-busy")
    a1c = mesh.client("a1", room)
    a2c = mesh.client("a2", room)
    a3c = mesh.client("a3", other)  # a3 has members, but not in `room`
    a1c.join("p1")
    a2c.join("p2")
    a3c.join("bystander")
    time.sleep(SETTLE)
    before = {n: mesh[n].metrics() for n in mesh.nodes}
    n = 50
    for i in range(n):
        a1c.say(f"p1:{i}")
        a2c.say(f"p2:{i}")
    for c in (a1c, a2c):
        wait_until(lambda c=c: len(says(c)) >= 2 * n, what=f"{2 * n} says")
    time.sleep(0.3)
    after = {x: mesh[x].metrics() for x in mesh.nodes}

    def delta(node, name, **labels):
        return (after[node].get(name, **labels) or 0) - (before[node].get(name, **labels) or 0)

    for c in (a1c, a2c):
        assert numbered(c, "p1") == list(range(n)) and numbered(c, "p2") == list(range(n))
    a3_in = {p: delta("a3", "chatmesh_mesh_pubs_received_total", peer=p) for p in ("a1", "a2")}
    a2_from_a1 = delta("a2", "chatmesh_mesh_pubs_received_total", peer="a1")
    a1_from_a2 = delta("a1", "chatmesh_mesh_pubs_received_total", peer="a2")
    suppressed = {x: delta(x, "chatmesh_mesh_pubs_suppressed_total") for x in ("a1", "a2")}
    forwarded = {x: delta(x, "chatmesh_mesh_pubs_forwarded_total") for x in ("a1", "a2")}
    print(f"during {2 * n} says in {room}: a3 received PUBs {a3_in}; a2 from a1 {a2_from_a1}, "
          f"a1 from a2 {a1_from_a2}; forwarded {forwarded}; suppressed {suppressed}; "
          f"bystander on a3 got {len(a3c.snapshot())} events")
    assert a3_in == {"a1": 0, "a2": 0}
    assert a2_from_a1 == n and a1_from_a2 == n
    assert forwarded == {"a1": n, "a2": n}
    assert suppressed["a1"] >= n and suppressed["a2"] >= n
    assert a3c.snapshot() == [(M, join_msg("bystander"))]


def test_three_senders_on_three_nodes_thousand_says_each_arrive_complete_and_in_order(mesh):
    room = unique_room("load")
    per_sender = 1000
    names = ["s1", "s2", "s3"]
    senders = [mesh.client(f"a{i + 1}", room) for i in range(3)]
    listeners = [mesh.client(f"a{i + 1}", room) for i in range(3)]
    for i, c in enumerate(senders):
        c.join(names[i])
    for i, c in enumerate(listeners):
        c.join(f"l{i + 1}")
    time.sleep(SETTLE)
    receivers = senders + listeners
    m_before = {n: mesh[n].metrics() for n in mesh.nodes}

    t0 = time.monotonic()
    t_sent = blast(dict(zip(names, senders)), per_sender)
    total = per_sender * len(names)
    try:
        wait_until(lambda: all(len(says(c, set(names))) >= total for c in receivers),
                   timeout=25, interval=0.1, what=f"{total} says at every receiver")
    finally:
        counts = [len(says(c, set(names))) for c in receivers]
        print(f"receivers (s1,s2,s3,l1,l2,l3 on a1,a2,a3,a1,a2,a3) got {counts} of {total}")
    t_all = time.monotonic() - t0
    time.sleep(0.2)
    for i, c in enumerate(receivers):
        for s in names:
            got = numbered(c, s)
            assert got == list(range(per_sender)), \
                f"receiver {i} from {s}: {len(got)} says, first out of order at " \
                f"{next((j for j, v in enumerate(got) if v != j), None)}"
    m_after = {n: mesh[n].metrics() for n in mesh.nodes}
    recv = {n: sum((m_after[n].get("chatmesh_mesh_pubs_received_total", peer=p) or 0) -
                   (m_before[n].get("chatmesh_mesh_pubs_received_total", peer=p) or 0)
                   for p in mesh.nodes if p != n) for n in mesh.nodes}
    print(f"{total} says sent in {t_sent:.2f}s; all {len(receivers)} receivers complete after "
          f"{t_all:.2f}s ({total * len(receivers) / t_all:.0f} deliveries/s); "
          f"PUBs received per node {recv}")
    assert recv == {n: 2 * per_sender for n in mesh.nodes}
    assert t_all < 30
