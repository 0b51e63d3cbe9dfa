"""Thousands of short-lived connections leave nothing behind."""

import concurrent.futures as cf
import threading
import time

from chatmesh_testkit import WAIT, join_msg, sio_event, ws_connect

CYCLES = 5000
WORKERS = 16
ROOMS = 50


def _cycle(node, i):
    ws = ws_connect(node, f"churn-{i % ROOMS}", timeout=WAIT)
    try:
        op = ws.recv()
        assert op.startswith('0{"sid":'), op
        ws.send("40")
        f = ws.recv()
        assert f.startswith('40{"sid":'), f
        name = f"u{i}"
        ws.send(sio_event("join", {"username": name}))
        want = sio_event("message", join_msg(name))
        deadline = time.monotonic() + WAIT
        while ws.recv() != want:  # others' joins / quits in a shared room may come first
            assert time.monotonic() < deadline, f"no join echo for {name}"
    except BaseException:
        ws.shutdown()
        raise
    how = i % 3
    if how == 0:
        ws.close(timeout=1)  # WebSocket close handshake
    elif how == 1:
        ws.send("41")  # Socket.IO disconnect, then close
        ws.close(timeout=1)
    else:
        ws.shutdown()  # the TCP connection just goes away


def test_5000_rapid_connect_disconnect_cycles_leave_no_connections_or_rooms(node):
    start = time.monotonic()
    errors = []
    stop = threading.Event()

    def run(i):
        if stop.is_set():
            return
        if time.monotonic() - start > 120:
            errors.append((i, "gave up: over 120 s"))
            stop.set()
            return
        try:
            _cycle(node, i)
        except BaseException as e:  # noqa: BLE001 - collected and reported below
            errors.append((i, repr(e)))
            if len(errors) > 20:
                stop.set()

    with cf.ThreadPoolExecutor(WORKERS) as pool:
        list(pool.map(run, range(CYCLES)))
    elapsed = time.monotonic() - start
    assert not errors, f"{len(errors)} failed cycles, first: {errors[:5]}"
    print(f"{CYCLES} cycles in {elapsed:.1f}s")
    h = node.wait_health(lambda h: h["connections"] == 0 and h["rooms"] == 0, timeout=10)
    assert h["status"] == "ok"
    m = node.metrics()
    assert m.get("chatmesh_connections") == 0, m.text
    assert m.get("chatmesh_rooms") == 0, m.text
    assert m.get("chatmesh_events_received_total", event="join") >= CYCLES, m.text
    node.assert_healthy()
