"""Failover of the web page's own client through the generated nginx front.

Headless Chromium opens the page through nginx (ip_hash puts it on one node of a 2-node mesh);
that node is killed with SIGKILL; the page shows "reconnecting", reconnects through nginx to the
other node, re-joins its room, and shows a say from a python client connected to that node.
Nodes and nginx come from IntegrationTests/integration (mesh_testkit, nginx_testkit); Chromium from
conftest's `new_browser`.
"""
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

pytest.importorskip("selenium")
from selenium.webdriver.common.by import By  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from harness.cluster import teardown  # noqa: E402
from harness.page import join, join_notices, messages, status, wait_for  # noqa: E402
from nginx_testkit import (FAST_LIMITS, nginx_available, start_fronted_mesh,  # noqa: E402
                           which_node)

FAILOVER_LIMIT_S = 15.0


@pytest.fixture
def fronted_mesh(request, new_browser):
    """(mesh b1+b2, nginx in front). Depends on new_browser so it is stopped before the
    browsers' cleanup runs; every process is stopped by pid, also on failure (logs printed)."""
    if not nginx_available():
        pytest.skip("nginx not installed")
    return start_fronted_mesh(teardown(request), ["b1", "b2"], limits=FAST_LIMITS, balance="ip_hash")


def test_page_fails_over_through_nginx_after_kill9(new_browser, fronted_mesh):
    mesh, front = fronted_mesh
    room = f"failover-{uuid.uuid4().hex[:8]}"
    alice = new_browser("alice")
    join(alice, front.http, room, "alice")
    transport_before = status(alice)
    conns = which_node(mesh, 1)
    victim = next(n for n, k in conns.items() if k == 1)
    survivor = next(n for n in mesh.names if n != victim)
    bob = mesh.sio(mesh[survivor].http, room, "bob", transports=["websocket"])

    # Before the kill: bob's say crosses the mesh to the page (and the room's interest is set up).
    bob.sio.emit("say", {"text": "before the kill"})
    wait_for(alice, lambda d: any(m["text"] == "before the kill" for m in messages(d)),
             "bob's say before the kill")

    halt = threading.Event()

    def chatter():
        i = 0
        while not halt.is_set():
            try:
                bob.sio.emit("say", {"text": f"after-kill-{i}"})
            except Exception:  # noqa: BLE001 - bob's node stays up
                pass
            i += 1
            halt.wait(0.1)

    t_kill = time.monotonic()
    mesh[victim].kill9()
    sender = threading.Thread(target=chatter, daemon=True)
    sender.start()
    try:
        wait_for(alice, lambda d: status(d) == "reconnecting", "reconnecting status")
        t_reconnecting = time.monotonic()
        assert not alice.find_element(By.ID, "send").is_enabled()
        wait_for(alice, lambda d: status(d).startswith("connected ("), "connected again",
                 timeout=FAILOVER_LIMIT_S + 5)
        t_connected = time.monotonic()
        wait_for(alice, lambda d: any(m["kind"] == "other" and m["user"] == "bob" and
                                      (m["text"] or "").startswith("after-kill-")
                                      for m in messages(d)),
                 "a say from bob after the failover", timeout=FAILOVER_LIMIT_S + 5)
        t_first = time.monotonic()
    finally:
        halt.set()
        sender.join(timeout=5)

    wait_for(alice, lambda d: d.find_element(By.ID, "send").is_enabled(), "re-joined (send enabled)")
    notices = [m["text"] for m in messages(alice) if m["kind"] == "notice"]
    conns_after = which_node(mesh, 2)
    print(f"page via nginx :{front.port} on {victim} ({transport_before}), killed; "
          f"'reconnecting' shown after {t_reconnecting - t_kill:.2f} s, {status(alice)!r} after "
          f"{t_connected - t_kill:.2f} s, first say from bob (on {survivor}) after "
          f"{t_first - t_kill:.2f} s; connections after {conns_after}; notices {notices}")
    assert join_notices(alice, "alice") >= 2, "the page re-joined its room"
    assert "Reconnected." in notices
    assert conns_after == {survivor: 2}
    assert t_first - t_kill < FAILOVER_LIMIT_S
