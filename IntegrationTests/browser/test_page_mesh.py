"""Two browser tabs on DIFFERENT nodes of a 2-node mesh chat with each other through the page.

The nodes (b1, b2) come from IntegrationTests/integration/mesh_testkit.py; Chromium from conftest's
`new_browser`; the page helpers from IntegrationTests/harness/page.py.
"""
import sys
import time
import uuid
from pathlib import Path

import pytest

pytest.importorskip("selenium")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from harness.cluster import teardown  # noqa: E402
from harness.page import join, say_both_ways, wait_message  # noqa: E402
from mesh_testkit import MeshCluster  # noqa: E402


@pytest.fixture
def mesh2(request, new_browser):
    """A 2-node mesh (b1, b2). Depends on new_browser so it is stopped before the browsers'
    cleanup runs; every node is stopped by pid, also on failure (logs printed then)."""
    return teardown(request).add(MeshCluster(["b1", "b2"])).start()


def test_two_tabs_on_different_nodes_chat_through_the_mesh(new_browser, mesh2):
    b1, b2 = mesh2["b1"], mesh2["b2"]
    room = f"mesh-{uuid.uuid4().hex[:8]}"
    alice, bob = new_browser("alice"), new_browser("bob")
    t0 = time.monotonic()
    join(alice, b1, room, "alice")
    time.sleep(0.3)  # b1's SUB for the room reaches b2
    join(bob, b2, room, "bob")
    wait_message(alice, "notice", "bob", "bob joined")   # a join crossing b2 -> b1

    say_both_ways(alice, bob, "hello from node b1", "hi from node b2")
    # Each tab really talks to its own node: one connection on each.
    conns = {n.name: n.healthz()["connections"] for n in (b1, b2)}
    recv = {n.name: n.counter("chatmesh_mesh_pubs_received_total") for n in (b1, b2)}
    print(f"alice on b1 (:{b1.port}), bob on b2 (:{b2.port}); connections {conns}; "
          f"PUBs received {recv}; chat done in {time.monotonic() - t0:.1f}s")
    assert conns == {"b1": 1, "b2": 1}
    assert recv["b1"] >= 2 and recv["b2"] >= 1   # bob's join + say to b1; alice's say to b2

    alice.close()   # closing the tab ends alice's session: bob on the other node sees it
    wait_message(bob, "notice", "alice", "alice left")
