"""A full mesh on one machine, each node on one event loop (`--threads 1`): 10 nodes in the
integration run (~2 s), 50 with CHATMESH_FULL_SCALE=1 (opt-in like the other full-scale tests;
~20-40 s with either build, 1.5 GB of debug processes):

    CHATMESH_FULL_SCALE=1 CHATMESH_BIN=.build/release/chatmesh .venv/bin/pytest -q -p no:cacheprovider \
        IntegrationTests/integration/test_mesh_scale.py

It forms (every node links to all N-1 others, once each), the chat protocol (joins, says, a
quit) crosses nodes 1, N/2 and N, and a say is forwarded only to the nodes with members of its
room, not to all N-1. The 10 / 25 / 50-node figures are bench/scale.py's (`make bench-scale`,
docs/SCALE.md). 50 processes share this machine's 2 cores: when other work keeps them off the
CPU for seconds, a handshake (3 s) or a heartbeat (2 s of silence) times out and that link comes
up twice. The check then fails with the load average in its message: that is starvation, not a
storm (docs/SCALE.md, "Reconnect storm")."""

import os
import time

import pytest

from chatmesh_testkit import join_msg, quit_msg, say_msg
from harness.cluster import teardown
from mesh_testkit import FAST_LIMITS, MeshCluster, rejects, unique_room

M = "message"
SETTLE = 0.3  # s for a SUB to reach the other nodes after a room's first local join
FULL_SCALE = os.environ.get("CHATMESH_FULL_SCALE") == "1"


@pytest.fixture(scope="module", params=[
    10, pytest.param(50, marks=pytest.mark.skipif(
        not FULL_SCALE, reason="50 nodes (~1.5 GB of debug processes): CHATMESH_FULL_SCALE=1"))])
def mesh(request):
    n = request.param
    names = [f"a{i:02d}" for i in range(1, n + 1)]  # zero-padded: name order is number order
    c = teardown(request, "module").add(MeshCluster(names, limits=FAST_LIMITS))
    for node in c.nodes.values():
        node.args = ["--threads", "1"]
    t0 = time.monotonic()
    c.spawn()
    for node in c.nodes.values():
        node.wait_healthy(60)
    c.wait_mesh(timeout=60)
    print(f"\n{n}-node mesh ({n * (n - 1) // 2} links) whole {time.monotonic() - t0:.2f} s after the first spawn")
    return c


def test_every_node_links_to_every_other_once(mesh):
    names = list(mesh.nodes)
    for name, node in mesh.nodes.items():
        up, down = node.peers()
        assert up == sorted(set(names) - {name}) and down == [], (name, up, down)
        m = node.metrics()
        assert m.get("chatmesh_mesh_peers_up") == len(names) - 1, name
        # One link-up per peer: a link that came up twice would be a reconnect storm.
        ups = {dict(labels)["peer"]: v for (n, labels), v in m.samples.items()
               if n == "chatmesh_mesh_link_ups_total"}
        load = "load average %.1f %.1f %.1f" % os.getloadavg()
        assert ups == {p: 1.0 for p in names if p != name}, (name, load, ups)
        refused = {reason: v for reason, v in rejects(node).items() if v}
        assert refused == {}, (name, load, refused)


def forwarded(node) -> tuple[float, float]:
    m = node.metrics()
    return (m.get("chatmesh_mesh_pubs_forwarded_total") or 0.0,
            m.get("chatmesh_mesh_pubs_suppressed_total") or 0.0)


def test_chat_crosses_nodes_1_middle_and_last_and_reaches_only_member_nodes(mesh):
    names = list(mesh.nodes)
    n = len(names)
    first, middle, last = names[0], names[n // 2 - 1], names[-1]  # a01, a05, a10 / a01, a25, a50
    room, other = unique_room("scale"), unique_room("scale-other")
    alice = mesh.client(first, room)
    bob = mesh.client(middle, room)
    carol = mesh.client(last, room)
    dave = mesh.client(middle, other)  # bob's node, another room: hears nothing of `room`
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
    members = (first, middle, last)
    before = {x: forwarded(mesh[x]) for x in members}
    for member, text, counts in ((alice, "from first", (4, 3, 2)), (bob, "from middle", (5, 4, 3)),
                                 (carol, "from last", (6, 5, 4))):
        member.say(text)
        for who, count in zip((alice, bob, carol), counts):
            who.wait_count(count)
    after = {x: forwarded(mesh[x]) for x in members}
    # Each node's one say went to the 2 other member nodes and was held back from the other N-3.
    for x in members:
        assert (after[x][0] - before[x][0], after[x][1] - before[x][1]) == (2, n - 3), \
            (x, before[x], after[x])

    carol.disconnect()
    says3 = [(M, say_msg("alice", "from first")), (M, say_msg("bob", "from middle")),
             (M, say_msg("carol", "from last"))]
    assert alice.wait_count(7) == [(M, join_msg("alice")), (M, join_msg("bob")),
                                   (M, join_msg("carol"))] + says3 + [(M, quit_msg("carol"))]
    assert bob.wait_count(6) == [(M, join_msg("bob")), (M, join_msg("carol"))] + says3 + \
        [(M, quit_msg("carol"))]
    assert carol.snapshot() == [(M, join_msg("carol"))] + says3
    time.sleep(SETTLE)
    assert dave.snapshot() == [(M, join_msg("dave"))]
    print(f"{first}/{middle}/{last}: joins, says and the quit crossed the {n}-node mesh; each say "
          f"went to 2 member nodes, {n - 3} held back")
