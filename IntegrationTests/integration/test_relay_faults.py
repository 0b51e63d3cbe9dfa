"""Faults around relayed requests (issue 15, docs/RELAY.md "Bounds and failures"), on a 3-node
mesh: a session made on one node, its requests made by hand on the others.

- The owner is killed (SIGKILL) while a relayed long-poll is held on another node: the client
  gets 400 "Session ID unknown" at once, and a python-socketio client behind a round-robin nginx
  reconnects to a live node and chats.
- The relaying node is killed while the session's long-poll is held through it: the owner drops
  that poll without closing the session, so the next poll through another node gets the
  session's packets, a say made meanwhile among them.
- A flood of concurrent relayed GETs for one session: the excess get 400, promptly, and every
  node stays healthy and relays the next session. A flood of relayed WebSockets for one session:
  one becomes its probe and upgrades it, the others are closed at once.
- The owner hangs (SIGSTOP): relayed requests get 400 once its links fall silent.
- A client that stops reading its relayed WebSocket is cut off at outbound_buffer; the room
  goes on.
- A sid naming a node of cluster.conf that is not running gets 400 at once.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest
import requests
import websocket

from chatmesh_testkit import WAIT, sio_event, wait_closed, ws_connect
from harness.cluster import teardown
from mesh_testkit import FAST_LIMITS, MeshCluster, unique_room, wait_until
from nginx_testkit import nginx_available, start_fronted_mesh
from relay_testkit import (UNKNOWN_SID, ClientLog, HeldGet, RoutedPolling, connected_session,
                           counts_delta, engine_error, node_tags, owner_of, random_sid,
                           relay_counts, say_packet, tag_for)

NAMES = ["a1", "a2", "a3"]
PROMPT_S = 3.0   # the "prompt error"
HELD_S = 0.3


def say_msg_packet(username: str, text: str) -> str:
    return sio_event("message", {"event": "broadcast_say",
                                 "data": {"username": username, "text": text}})


# --------------------------------------------------------------------------------------------
# The owner dies


@pytest.fixture
def fronted(request):
    if not nginx_available():
        pytest.skip("nginx not installed")
    return start_fronted_mesh(teardown(request), NAMES, balance="round-robin", limits=FAST_LIMITS)


def test_owner_killed_while_relayed_poll_held_prompt_400_and_client_reconnects(fronted):
    mesh, front = fronted
    tags = node_tags(mesh)
    log = ClientLog()
    room = unique_room("owner-dies")
    # alice: python-socketio, long-polling through the round-robin front (reconnects by itself).
    alice = mesh.sio(front.http, room, "alice", transports=["polling"],
                     client_kw=log.client_kw())
    owner = owner_of(tags, alice.sio.eio.sid)
    assert owner, (alice.sio.eio.sid, tags)
    relay, third = [n for n in NAMES if n != owner]
    # bob: WebSocket, straight on a node that survives.
    bob = mesh.sio(mesh[relay].http, room, "bob", transports=["websocket"])
    bob.sio.emit("say", {"text": "before"})
    alice.wait(lambda: alice.saw("broadcast_say", "bob", "before"), what="bob's say before")

    # A raw session on the same owner, with a long-poll held through `relay`.
    raw = connected_session(mesh[owner], [mesh[relay]], room)
    held = HeldGet(raw, timeout=WAIT + 5)
    time.sleep(HELD_S)
    alice_disconnects = len(alice.disconnects)
    t_kill = time.monotonic()
    mesh[owner].kill9()
    r = held.wait(PROMPT_S + 5)
    took = time.monotonic() - t_kill
    alice.wait(lambda: len(alice.disconnects) > alice_disconnects, PROMPT_S + 2,
               "alice's disconnect after the kill")
    t_alice_down = alice.disconnects[-1][0] - t_kill
    alice.wait_joined(2, timeout=15)
    t_alice_back = alice.join_acks[-1][0] - t_kill
    new_owner = owner_of(tags, alice.sio.eio.sid)
    # Bob hears alice's re-join (bob joined after her first join): her new node's interest in
    # the room, sent before that join on the same link, has reached bob's node, so bob's next
    # say reaches her.
    bob.wait(lambda: bob.saw("join", "alice"), what="alice's re-join")
    bob.sio.emit("say", {"text": "after"})
    alice.wait(lambda: alice.saw("broadcast_say", "bob", "after"), what="bob's say after")
    alice.sio.emit("say", {"text": "alice is back"})
    bob.wait(lambda: bob.saw("broadcast_say", "alice", "alice is back"), what="alice's say")
    print(f"owner {owner} killed: the poll held through {relay} answered {r.status_code} "
          f"{r.text} after {took:.2f} s; alice (polling via nginx) disconnected after "
          f"{t_alice_down:.2f} s, re-joined on {new_owner} after {t_alice_back:.2f} s; "
          f"alice's log: {log.refusal_lines()[:4]}")
    assert r.status_code == 400 and engine_error(r) == UNKNOWN_SID, (r.status_code, r.text)
    assert took < PROMPT_S, f"the relayed poll was answered {took:.2f} s after the kill"
    assert t_alice_down < PROMPT_S, f"alice noticed {t_alice_down:.2f} s after the kill"
    assert new_owner in (relay, third), new_owner
    for n in (relay, third):
        mesh[n].assert_healthy()
    assert relay_counts(mesh[relay]).get(("get", "peer_down"), 0) >= 1, relay_counts(mesh[relay])


# --------------------------------------------------------------------------------------------
# The relay dies


@pytest.fixture
def mesh3(request):
    return teardown(request).add(MeshCluster(NAMES, limits=FAST_LIMITS)).start()


def test_relaying_node_killed_session_survives_through_another_node(mesh3):
    mesh = mesh3
    room = unique_room("relay-dies")
    # The session: made on a1, its requests through a3 until the held poll goes through a2.
    p = connected_session(mesh["a1"], [mesh["a3"]], room, "carol")
    dave = mesh.client("a3", room)
    dave.join("dave")
    p.collect_until(lambda g: any('"username":"dave"' in x for x in g))  # dave's join
    owner_before = relay_counts(mesh["a1"])

    via_a2 = RoutedPolling(mesh["a1"], [mesh["a2"]], room)
    via_a2.sid = p.sid
    held_via_a2 = HeldGet(via_a2)
    time.sleep(HELD_S)
    t_kill = time.monotonic()
    mesh["a2"].kill9()
    with pytest.raises(requests.RequestException):
        held_via_a2.wait(WAIT + 2)   # its connection went down with a2

    # The owner notices the lost link and the request it carried, and keeps the session.
    wait_until(lambda: "a2" in mesh["a1"].peers()[1], PROMPT_S, "a1 to see a2 down")
    t_noticed = time.monotonic() - t_kill
    owner_delta = counts_delta(owner_before, relay_counts(mesh["a1"]))
    dave.say("while carol had no poll")
    time.sleep(0.2)
    got = p.collect_until(lambda g: any("while carol had no poll" in x for x in g))
    p.send(say_packet("carol is still here"))
    dave.wait_for(lambda evs: any(e == "message" and a.get("data", {}).get("text") ==
                                  "carol is still here" for e, a in evs), what="carol's say")
    print(f"a2 (relay) killed; a1 saw it down after {t_noticed:.2f} s; a1's relay counters "
          f"{owner_delta}; next poll via a3 got {got}")
    assert say_msg_packet("dave", "while carol had no poll") in got
    assert "1" not in got and "6" not in got, got
    lost = {r: v for (k, r), v in owner_delta.items() if k == "get"}
    assert set(lost) & {"peer_down", "cancelled"}, f"a1 counted no lost GET: {owner_delta}"
    mesh["a1"].assert_healthy()
    mesh["a3"].assert_healthy()


# --------------------------------------------------------------------------------------------
# A flood


def test_flood_of_relayed_gets_for_one_session_excess_refused_nodes_healthy(mesh3):
    mesh = mesh3
    room = unique_room("flood")
    p = connected_session(mesh["a1"], [mesh["a2"], mesh["a3"]], room, "erin")
    before = {n: relay_counts(mesh[n]) for n in NAMES}
    n = 12   # three times the per-session cap (4), half through a2, half through a3
    go = threading.Barrier(n)
    results: list = [None] * n

    def one(i):
        q = RoutedPolling(mesh["a1"], [mesh["a2" if i % 2 else "a3"]], room)
        q.sid = p.sid
        go.wait()
        t0 = time.monotonic()
        try:
            r = q.get(timeout=WAIT + 5)
            results[i] = (r.status_code, r.text[:80], time.monotonic() - t0)
        except requests.RequestException as e:
            results[i] = ("error", repr(e)[:80], time.monotonic() - t0)

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT + 8)
    after = {k: relay_counts(mesh[k]) for k in NAMES}
    deltas = {k: counts_delta(before[k], after[k]) for k in NAMES}
    statuses = [r[0] for r in results]
    print(f"{n} concurrent relayed GETs: {sorted(results, key=str)}; relay counters {deltas}")
    assert all(r is not None for r in results), results
    assert all(r[2] < PROMPT_S for r in results), f"a GET was not answered promptly: {results}"
    assert statuses.count(400) >= n - 1, statuses
    assert set(statuses) <= {200, 400}, statuses
    # Each was relayed (a2 and a3 counted all n); the owner answered each.
    assert sum(sum(deltas[k].values()) for k in ("a2", "a3")) == n, deltas
    # The nodes are fine and relay the next session.
    for k in NAMES:
        h = mesh[k].assert_healthy()
        assert h["mesh"]["peers_up"] == sorted(x for x in NAMES if x != k), h
    q = connected_session(mesh["a1"], [mesh["a2"], mesh["a3"]], unique_room("after-flood"),
                          "frank")
    q.send(say_packet("fine"))
    got = q.collect_until(lambda g: any('"text":"fine"' in x for x in g))
    assert say_msg_packet("frank", "fine") in got, got


def test_flood_of_relayed_websockets_for_one_session_one_probe_wins(mesh3):
    """Eight WebSocket upgrades for one polling session at once, through a2 and a3: the owner
    takes one as the session's probe and closes the others at once (as it does a local
    WebSocket that comes too late); the winner completes the upgrade and chats."""
    mesh = mesh3
    room = unique_room("ws-flood")
    p = connected_session(mesh["a1"], [mesh["a2"]], room, "gina")
    before = {n: relay_counts(mesh[n]) for n in NAMES}
    n = 8
    go = threading.Barrier(n)
    sockets: list = [None] * n

    def one(i):
        go.wait()
        try:
            sockets[i] = ws_connect(mesh["a2" if i % 2 else "a3"], room, sid=p.sid)
        except Exception as e:  # noqa: BLE001 - a refused upgrade is one of the outcomes
            sockets[i] = e

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT + 2)
    upgraded = [s for s in sockets if s is not None and not isinstance(s, Exception)]
    closed = {}

    def watch(i, s):
        try:
            wait_closed(s, timeout=1.5)
            closed[i] = True
        except AssertionError:
            closed[i] = False

    watchers = [threading.Thread(target=watch, args=(i, s), daemon=True)
                for i, s in enumerate(upgraded)]
    for t in watchers:
        t.start()
    for t in watchers:
        t.join(5)
    open_ones = [s for i, s in enumerate(upgraded) if not closed.get(i)]
    try:
        deltas = {k: counts_delta(before[k], relay_counts(mesh[k])) for k in NAMES}
        print(f"{n} WebSockets for one session: {len(upgraded)} upgraded "
              f"({len(open_ones)} still open after 1.5 s), refused at the upgrade "
              f"{[repr(s)[:60] for s in sockets if isinstance(s, Exception)]}; relay counters {deltas}")
        assert len(open_ones) == 1, f"{len(open_ones)} probes survived"
        ws = open_ones[0]
        held = HeldGet(p)
        time.sleep(HELD_S)
        ws.send("2probe")
        ws.settimeout(WAIT)
        assert ws.recv() == "3probe"
        r = held.wait()
        assert (r.status_code, r.text) == (200, "6"), (r.status_code, r.text)
        ws.send("5")
        ws.send(say_packet("upgraded through the flood"))
        want = say_msg_packet("gina", "upgraded through the flood")
        got = []
        while want not in got:
            got.append(ws.recv())
    finally:
        for s in upgraded:
            s.close()
    for k in NAMES:
        mesh[k].assert_healthy()


# --------------------------------------------------------------------------------------------
# The owner hangs

MESH_PING_MS = 500   # a link silent for two intervals is closed


@pytest.fixture
def fast_mesh3(request):
    return teardown(request).add(MeshCluster(NAMES, limits=FAST_LIMITS,
                                             mesh={"ping_interval": MESH_PING_MS})).start()


def test_owner_stopped_relayed_requests_fail_once_its_link_falls_silent(fast_mesh3):
    """SIGSTOP the owner: its links stay open but fall silent. A poll held through a2 and a
    POST sent through a3 afterwards both get the unknown-sid 400 once the link is judged
    dead (two mesh ping intervals), not at some HTTP timeout; after SIGCONT the mesh heals
    and new sessions relay again."""
    mesh = fast_mesh3
    room = unique_room("owner-hangs")
    p = connected_session(mesh["a1"], [mesh["a3"]], room, "hank")
    via_a2 = RoutedPolling(mesh["a1"], [mesh["a2"]], room)
    via_a2.sid = p.sid
    held = HeldGet(via_a2, timeout=WAIT + 5)
    time.sleep(HELD_S)
    t_stop = time.monotonic()
    mesh["a1"].sigstop()
    try:
        t_post = time.monotonic()
        posted = p.post(say_packet("into the void"), timeout=WAIT + 5)
        post_took = time.monotonic() - t_post
        r = held.wait(WAIT + 6)
        held_took = time.monotonic() - t_stop
    finally:
        mesh["a1"].sigcont()
    silence_s = 2 * MESH_PING_MS / 1000
    print(f"a1 stopped: the poll held through a2 answered {r.status_code} {r.text} after "
          f"{held_took:.2f} s; a POST through a3 answered {posted.status_code} {posted.text} "
          f"after {post_took:.2f} s (links judged dead after {silence_s:.1f} s of silence)")
    for reply in (r, posted):
        assert reply.status_code == 400 and engine_error(reply) == UNKNOWN_SID, reply.text
    assert held_took < silence_s + 2.0, held_took
    assert post_took < silence_s + 2.0, post_took

    healed = mesh.wait_mesh(timeout=10)
    q = connected_session(mesh["a1"], [mesh["a2"], mesh["a3"]], unique_room("after-stop"), "ivy")
    q.send(say_packet("relayed again"))
    got = q.collect_until(lambda g: any('"text":"relayed again"' in x for x in g))
    # The first session: its owner kept it (only the relay's links were lost). Whether the
    # POST answered 400 was carried out anyway shows in its packets.
    again = p.post(say_packet("still there?"))
    old_state = f"{again.status_code} {again.text}"
    if again.status_code == 200:
        packets = p.collect_until(lambda g: any("still there?" in x for x in g))
        old_state += f", its packets {packets}"
    print(f"mesh healed {healed:.2f} s after SIGCONT; a new session relays {got[-1]!r}; "
          f"the first session now answers {old_state}")
    assert say_msg_packet("ivy", "relayed again") in got


# --------------------------------------------------------------------------------------------
# A client behind a relayed WebSocket that stops reading

FLOOD_TEXT = 30000       # characters per say (text_max raised for this test)
FLOOD_MAX_SAYS = 700     # 21 MB at most; kernel buffers on both hops hold a few MB
FLOOD_ROUND = 2          # says per round, read by the live members before the next round


def flood_says(events) -> int:
    return sum(1 for e, a in events if e == "message" and isinstance(a, dict) and
               a.get("event") == "broadcast_say" and len(a["data"].get("text", "")) == FLOOD_TEXT)


@pytest.fixture
def tight_mesh3(request):
    return teardown(request).add(MeshCluster(NAMES, limits={
        "outbound_buffer": 65536, "say_rate": 100000, "say_burst": 100000,
        "text_max": FLOOD_TEXT})).start()


def test_relayed_websocket_client_that_stops_reading_is_cut_and_the_room_goes_on(tight_mesh3):
    """The session lives on a1, its WebSocket on a2 (relayed), and its client never reads. A
    flood in its room passes outbound_buffer: the session is cut off, as a local one is, while
    the members that read get every say in order and every node stays healthy."""
    mesh = tight_mesh3
    room = unique_room("slow-relayed")
    p = connected_session(mesh["a1"], [mesh["a3"]], room, "slow")
    held = HeldGet(p)
    time.sleep(HELD_S)
    ws = ws_connect(mesh["a2"], room, sid=p.sid,
                    sockopt=[(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)])
    try:
        ws.send("2probe")
        ws.settimeout(WAIT)
        assert ws.recv() == "3probe"
        assert held.wait().text == "6"
        ws.send("5")
        observer = mesh.client("a1", room)
        observer.join("observer")
        flooder = mesh.client("a3", room)
        flooder.join("flooder")
        base = len(observer.snapshot())
        conns = mesh["a1"].healthz()["connections"]
        sent = 0
        cut_at = None
        t0 = time.monotonic()
        while sent < FLOOD_MAX_SAYS and (cut_at is None or sent < cut_at + 10):
            for _ in range(FLOOD_ROUND):
                flooder.say(f"{sent:05d}" + "f" * (FLOOD_TEXT - 5))
                sent += 1
            observer.wait_for(lambda e, n=sent: flood_says(e[base:]) >= n, timeout=10,
                              what=f"flood say {sent - 1}")
            if cut_at is None and mesh["a1"].healthz()["connections"] < conns:
                cut_at = sent
        took = time.monotonic() - t0
        got = [a["data"]["text"][:5] for e, a in observer.snapshot()[base:]
               if e == "message" and a.get("event") == "broadcast_say"]
        print(f"the relayed WebSocket that never reads was cut after {cut_at} says of "
              f"{FLOOD_TEXT} characters ({took:.1f} s); the observer got {len(got)} of {sent}")
        assert cut_at is not None, f"still connected after {sent} says"
        assert got == [f"{i:05d}" for i in range(sent)], "the observer missed or reordered says"
        wait_closed(ws, timeout=15)   # drains what the kernel held, then sees the close
        for n in NAMES:
            h = mesh[n].assert_healthy()
            assert h["mesh"]["peers_up"] == sorted(x for x in NAMES if x != n), h
        observer.say("after the flood")
        flooder.wait_for(lambda e: any(isinstance(a, dict) and a.get("data", {}).get("text") ==
                                       "after the flood" for _, a in e), what="a say after")
    finally:
        ws.close()


# --------------------------------------------------------------------------------------------
# An owner that never came up


def test_sid_of_a_listed_node_that_is_not_running_gets_400_at_once(request):
    """a3 is in cluster.conf but was never started: a sid with its tag names a node of the
    cluster whose link is down. Every node answers the unknown-sid 400 at once (GET, POST
    and WebSocket), rather than waiting for a link that may never come."""
    mesh = teardown(request).add(MeshCluster(["a1", "a2"], phantoms=["a3"])).start()
    tags = node_tags(mesh)
    assert tags == {n: tag_for(n) for n in ("a1", "a2")}, tags
    sid = random_sid(tag_for("a3"))
    for name in ("a1", "a2"):
        p = RoutedPolling(mesh[name], [mesh[name]], "r1")
        p.sid = sid
        for what, call in (("GET", p.get), ("POST", lambda: p.post("40"))):
            t0 = time.monotonic()
            r = call()
            took = time.monotonic() - t0
            print(f"{what} with a3's tag on {name}: {r.status_code} {r.text} in {took * 1000:.1f} ms")
            assert r.status_code == 400 and engine_error(r) == UNKNOWN_SID, (name, what, r.text)
            assert took < 1.0, (name, what, took)
        t0 = time.monotonic()
        try:
            ws = ws_connect(mesh[name], "r1", sid=sid)
        except websocket.WebSocketBadStatusException as e:
            assert e.status_code == 400, e
        else:
            frames = wait_closed(ws, timeout=2.0)
            ws.close()
            assert frames == [], frames
        assert time.monotonic() - t0 < 2.0
        mesh[name].assert_healthy()
