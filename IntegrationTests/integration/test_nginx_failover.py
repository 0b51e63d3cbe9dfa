"""Failover through nginx: python-socketio clients (reconnection on) behind the generated nginx
front; the node they are on is killed with SIGKILL; they reconnect through nginx to the other
node, re-join their room from their `connect` handler, and receive a say from a client there.
"""

from __future__ import annotations

import threading
import time

import pytest

from nginx_testkit import (FAST_LIMITS, nginx_available, nginx_mesh,  # noqa: F401
                           unique_room, which_node)

pytestmark = pytest.mark.skipif(not nginx_available(), reason="nginx not installed")

FAILOVER_LIMIT_S = 15.0


def test_kill9_node_clients_fail_over_through_nginx(nginx_mesh):
    mesh, front = nginx_mesh(limits=FAST_LIMITS, balance="ip_hash")
    room = unique_room("failover")
    movers = [mesh.sio(front.http, room, "ws-mover"),                          # upgrades to WS
              mesh.sio(front.http, room, "poll-mover", transports=["polling"])]
    assert movers[0].sio.transport() == "websocket"
    conns = which_node(mesh, 2)
    victim = next(n for n, k in conns.items() if k == 2)
    survivor = next(n for n in mesh.names if n != victim)
    bob = mesh.sio(mesh[survivor].http, room, "bob", transports=["websocket"])
    which_node(mesh, 3)

    # bob says once a tenth of a second from the kill on; each mover must hear one again.
    halt = threading.Event()
    said = []

    def chatter():
        i = 0
        while not halt.is_set():
            try:
                bob.sio.emit("say", {"text": f"after-kill-{i}"})
                said.append(i)
            except Exception:  # noqa: BLE001 - bob's node stays up; report via the asserts
                pass
            i += 1
            halt.wait(0.1)

    print(f"movers on {victim} (via nginx :{front.port}), bob on {survivor}; killing {victim}")
    t_kill = time.monotonic()
    mesh[victim].kill9()
    sender = threading.Thread(target=chatter, daemon=True)
    sender.start()
    try:
        results = {}
        for m in movers:
            m.wait(lambda m=m: any(t.startswith("after-kill-") for _, _, t in m.says(t_kill)),
                   FAILOVER_LIMIT_S + 5, f"{m.username}: a say from bob after the failover")
            first = next(t for t, _, x in m.says(t_kill) if x.startswith("after-kill-"))
            dropped = next((t for t, _ in m.disconnects if t >= t_kill), None)
            back = next((t for t, _ in m.connects if t >= t_kill), None)
            results[m.username] = (first - t_kill, dropped, back)
    finally:
        halt.set()
        sender.join(timeout=5)

    conns_after = which_node(mesh, 3)
    for m in movers:
        took, dropped, back = results[m.username]
        rejoined = [a for t, a in m.join_acks if t >= t_kill]
        print(f"{m.username}: disconnect noticed after {dropped - t_kill:.2f} s "
              f"(reason {m.disconnects[-1][1]!r}), reconnected via "
              f"{m.connects[-1][1]} after {back - t_kill:.2f} s, re-join ack {rejoined}, "
              f"first say from bob after {took:.2f} s")
        assert rejoined and rejoined[0] == {"ok": True}
        assert took < FAILOVER_LIMIT_S, f"{m.username}: {took:.1f} s from kill to first message"
    print(f"connections after the failover: {conns_after}; bob said {len(said)} times")
    assert conns_after == {survivor: 3}
