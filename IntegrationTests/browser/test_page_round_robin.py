"""The page in headless Chromium through a round-robin nginx front (no ip_hash) over a 3-node
mesh (issue 15): every request of its session may reach any node, which relays it to the
session's owner. The page chats with a python-socketio client connected straight to another
node; neither nginx nor the browser sees a refused request ("Session ID unknown").

Two runs: the page's default transports (WebSocket, long-polling if that fails) and the page
forced to long-polling (`?transport=polling`), where most requests reach a node other than the
owner. Nodes and nginx come from IntegrationTests/integration (nginx_testkit, relay_testkit);
Chromium from conftest's `new_browser`.
"""
import sys
import time
import uuid
from pathlib import Path

import pytest

pytest.importorskip("selenium")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from harness.cluster import teardown  # noqa: E402
from harness.page import join, messages, say, status, wait_message  # noqa: E402
from nginx_testkit import FAST_LIMITS, nginx_available, start_fronted_mesh  # noqa: E402
from relay_testkit import access_entries, node_of_upstream, node_tags, owner_of  # noqa: E402

NAMES = ["b1", "b2", "b3"]


@pytest.fixture(scope="module")
def fronted(request):
    """(mesh b1..b3, nginx round-robin in front); stopped by pid at the module's end, also on
    failure (logs printed then)."""
    if not nginx_available():
        pytest.skip("nginx not installed")
    return start_fronted_mesh(teardown(request), NAMES, balance="round-robin",
                              limits=FAST_LIMITS)


def session_owner(mesh, front, since: int) -> str | None:
    """The node that owns the page's session: the tag of the sid in the page's requests since
    access-log entry `since` (every request after the handshake names the sid)."""
    tags = node_tags(mesh)
    for e in access_entries(front)[since:]:
        if "sid=" in e["uri"]:
            sid = e["uri"].split("sid=", 1)[1].split("&", 1)[0]
            return owner_of(tags, sid)
    return None


@pytest.mark.parametrize("transport", ["default", "polling"])
def test_page_chats_through_round_robin_front_with_a_client_on_another_node(
        new_browser, fronted, transport):
    mesh, front = fronted
    room = f"rr-{transport}-{uuid.uuid4().hex[:8]}"
    since = len(access_entries(front))
    conns_before = {n: mesh[n].healthz()["connections"] for n in NAMES}
    alice = new_browser("alice")
    t0 = time.monotonic()
    join(alice, front.http, room, "alice", query="" if transport == "default" else "transport=polling",
         expect_transport=None if transport == "default" else "polling")
    t_joined = time.monotonic() - t0
    # The session's owner: named by the sid's tag in the page's polling requests; a WebSocket
    # session (no sid in its one request) is counted where it is.
    sid_owner = session_owner(mesh, front, since)
    conns = {n: mesh[n].healthz()["connections"] - conns_before[n] for n in NAMES}
    owner = sid_owner or next(n for n, k in conns.items() if k == 1)
    other = next(n for n in NAMES if n != owner)
    bob = mesh.sio(mesh[other].http, room, "bob", transports=["websocket"])
    wait_message(alice, "notice", "bob", "bob joined")

    bob.sio.emit("say", {"text": "hello page"})
    wait_message(alice, "other", "bob", "hello page")
    say(alice, "hello bob")
    bob.wait(lambda: bob.saw("broadcast_say", "alice", "hello bob"), what="alice's say at bob")
    wait_message(alice, "own", "alice", "hello bob")
    for i in range(5):   # a few more each way: many polling requests, all through nginx
        bob.sio.emit("say", {"text": f"bob {i}"})
        say(alice, f"alice {i}")
    wait_message(alice, "other", "bob", "bob 4")
    bob.wait(lambda: bob.saw("broadcast_say", "alice", "alice 4"), what="alice's last say")
    texts = [m["text"] for m in messages(alice) if m["kind"] in ("own", "other")]
    bob.close()

    entries = access_entries(front)[since:]
    page_requests = [e for e in entries if "/socket.io/" in e["uri"]]
    by_node = {}
    for e in page_requests:
        n = node_of_upstream(mesh, e["upstream"])
        by_node[n] = by_node.get(n, 0) + 1
    refused = [e for e in entries if e["status"] >= 400]
    console = [e.get("message", "") for e in alice.get_log("browser")]
    bad_console = [m for m in console if "Session ID unknown" in m or " 400 " in m or "(Bad Request)" in m]
    print(f"page ({transport}) {status(alice)!r} joined in {t_joined:.2f} s, session on {owner} "
          f"(sid tag names {sid_owner}; new connections {conns}); bob on {other}; nginx sent the page's "
          f"{len(page_requests)} Engine.IO requests to {by_node}; refused {len(refused)}; "
          f"console {console[-5:]}")
    assert texts.count("hello page") == 1 and texts.count("hello bob") == 1, texts
    assert sum(1 for t in texts if t.startswith("bob ")) == 5, texts
    assert not refused, f"nginx answered >= 400: {refused}"
    assert not bad_console, bad_console
    assert status(alice) == ("connected (polling)" if transport == "polling"
                             else "connected (websocket)")
    if transport == "polling":
        assert conns[owner] == 1, (owner, conns)
        assert len(by_node) == len(NAMES), \
            f"round-robin should spread the page's polling requests over every node: {by_node}"
