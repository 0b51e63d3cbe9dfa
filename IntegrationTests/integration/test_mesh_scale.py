"""A 10-node full mesh on one machine, each node on one event loop (`--threads 1`): it forms
(every node links to all 9 others, once each), the chat protocol crosses nodes 1, 5 and 10,
and a say is forwarded only to the nodes with members of its room, not to all N-1.
The 10 / 25 / 50-node figures are bench/scale.py's (`make bench-scale`, docs/SCALE.md)."""

import time

import pytest

from chatmesh_testkit import join_msg, quit_msg, say_msg
from harness.cluster import teardown
from mesh_testkit import FAST_LIMITS, MeshCluster, rejects, unique_room

M = "message"
NAMES = [f"a{i:02d}" for i in range(1, 11)]  # zero-padded: the name order is the number order
SETTLE = 0.3  # s for a SUB to reach the other nodes after a room's first local join


@pytest.fixture(scope="module")
def mesh(request):
    c = teardown(request, "module").add(MeshCluster(NAMES, limits=FAST_LIMITS))
    for node in c.nodes.values():
        node.args = ["--threads", "1"]
    t0 = time.monotonic()
    c.start(timeout=30)
    print(f"\n10-node mesh (45 links) whole {time.monotonic() - t0:.2f} s after the first spawn")
    return c


def test_ten_nodes_form_the_full_mesh_each_link_once(mesh):
    for name, node in mesh.nodes.items():
        up, down = node.peers()
        assert up == sorted(set(NAMES) - {name}) and down == [], (name, up, down)
        m = node.metrics()
        assert m.get("chatmesh_mesh_peers_up") == 9, name
        # One link-up per peer: a link that came up twice would be a reconnect storm.
        ups = {dict(labels)["peer"]: v for (n, labels), v in m.samples.items()
               if n == "chatmesh_mesh_link_ups_total"}
        assert ups == {p: 1.0 for p in NAMES if p != name}, (name, ups)
        refused = {reason: v for reason, v in rejects(node).items() if v}
        assert refused == {}, (name, refused)


def forwarded(node) -> tuple[float, float]:
    m = node.metrics()
    return (m.get("chatmesh_mesh_pubs_forwarded_total") or 0.0,
            m.get("chatmesh_mesh_pubs_suppressed_total") or 0.0)


def test_chat_crosses_nodes_1_5_and_10_and_reaches_only_member_nodes(mesh):
    room, other = unique_room("scale"), unique_room("scale-other")
    alice = mesh.client("a01", room)
    bob = mesh.client("a05", room)
    carol = mesh.client("a10", room)
    dave = mesh.client("a05", other)  # same node as bob, another room: hears nothing of `room`
    dave.join("dave")
    alice.join("alice")
    time.sleep(SETTLE)
    bob.join("bob")
    alice.wait_count(2)
    time.sleep(SETTLE)
    carol.join("carol")
    alice.wait_count(3)
    bob.wait_count(2)
    time.sleep(SETTLE)

    # Each say reaches every member before the next is said (each travels its own links).
    before = {n: forwarded(mesh[n]) for n in ("a01", "a05", "a10")}
    for member, text, counts in ((alice, "from a01", (4, 3, 2)), (bob, "from a05", (5, 4, 3)),
                                 (carol, "from a10", (6, 5, 4))):
        member.say(text)
        for who, count in zip((alice, bob, carol), counts):
            who.wait_count(count)
    after = {n: forwarded(mesh[n]) for n in ("a01", "a05", "a10")}
    # Each node's one say went to the 2 other member nodes and was held back from the other 7.
    for n in before:
        assert (after[n][0] - before[n][0], after[n][1] - before[n][1]) == (2, 7), (n, before[n], after[n])

    carol.disconnect()
    says3 = [(M, say_msg("alice", "from a01")), (M, say_msg("bob", "from a05")),
             (M, say_msg("carol", "from a10"))]
    assert alice.wait_count(7) == [(M, join_msg("alice")), (M, join_msg("bob")),
                                   (M, join_msg("carol"))] + says3 + [(M, quit_msg("carol"))]
    assert bob.wait_count(6) == [(M, join_msg("bob")), (M, join_msg("carol"))] + says3 + \
        [(M, quit_msg("carol"))]
    assert carol.snapshot() == [(M, join_msg("carol"))] + says3
    time.sleep(SETTLE)
    assert dave.snapshot() == [(M, join_msg("dave"))]
    print("a01/a05/a10: joins, says and the quit crossed the 10-node mesh; each say went to "
          "2 member nodes, 7 held back")
