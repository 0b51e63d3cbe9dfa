"""Relaying a session's requests to its owner (issue 15, docs/RELAY.md), by hand over raw HTTP
and WebSocket against a 3-node mesh.

A session is made on a1; then each of its polling requests goes to the next of a2, a3, a1 (so
two in three are relayed), and the packet stream it gets must be exactly the one a session
pinned to a1 gets for the same script; so must the polling -> WebSocket upgrade with the
WebSocket on another node. Sids that name no node, or a node that does not have them, get the
usual 400 promptly (the owner's, relayed). The owner's rules hold for relayed requests:
max_payload, Origin and CORS, rate limits, the heartbeat, a client that goes away, a WebSocket
closed or never finished. The latency of a polling client whose requests alternate between
the nodes is printed beside the same client pinned to its owner. Redis mode does not relay.
"""

from __future__ import annotations

import json
import os
import re
import socket
import threading
import time

import pytest
import requests
import websocket

from chatmesh_testkit import (RS, WAIT, Polling, record_figure, sio_event, wait_closed,
                              ws_connect)
from mesh_testkit import FAST_LIMITS, module_mesh, unique_room, wait_until
from redis_testkit import cluster_factory, redis_factory, redis_server  # noqa: F401 (fixtures)
from relay_testkit import (UNKNOWN_SID, HeldGet, Route, RoutedPolling, connected_session,
                           counts_delta, engine_error, join_packet, node_tags, percentile,
                           random_sid, relay_counts, relay_latency_count, say_packet, tag_for,
                           unused_tag)

NAMES = ["a1", "a2", "a3"]
HELD_S = 0.3  # how long a GET is left held before the packet it waits for is made


@pytest.fixture(scope="module")
def mesh(request):
    return module_mesh(request, NAMES, limits=FAST_LIMITS)


@pytest.fixture(scope="module")
def tags(mesh):
    return node_tags(mesh)


def routes(mesh):
    """(pinned, alternating): every request to a1, or each to the next of a2, a3, a1."""
    return [mesh["a1"]], [mesh["a2"], mesh["a3"], mesh["a1"]]


# --------------------------------------------------------------------------------------------
# One script, pinned and alternating


def normalise(packet: str) -> str:
    """Replaces what differs between two runs of one script: the Engine.IO and Socket.IO sids."""
    packet = re.sub(r'^0\{"sid":"[^"]+"', '0{"sid":"<sid>"', packet)
    return re.sub(r'^40\{"sid":"[^"]+"\}$', '40{"sid":"<sio-sid>"}', packet)


class Transcript:
    """What one run of the script saw: POST replies, every packet the GETs returned (their
    order, not how they were batched), and GET replies other than 200."""

    def __init__(self, poll: RoutedPolling):
        self.poll = poll
        self.items: list[tuple] = []
        self.packets: list[str] = []

    def post(self, body: str, expect_ok: bool = True) -> None:
        r = self.poll.post(body)
        self.items.append(("POST", r.status_code, r.text))
        assert not expect_ok or (r.status_code, r.text) == (200, "ok"), \
            f"POST {body[:60]!r} on {self.poll.log[-1][1]}: {r.status_code} {r.text}"

    def take(self, r: requests.Response) -> None:
        if r.status_code != 200:
            self.items.append(("GET", r.status_code, r.text))
            return
        for p in r.text.split(RS):
            assert p != "2", "a ping during the script (ping_interval is 25 s)"
            self.items.append(("packet", normalise(p)))
            self.packets.append(p)

    def get_until(self, pred, timeout: float = WAIT) -> None:
        deadline = time.monotonic() + timeout
        while not pred(self.packets):
            left = deadline - time.monotonic()
            assert left > 0, f"timed out; packets so far {self.packets}"
            r = self.poll.get(timeout=left + 1)
            assert r.status_code == 200, f"GET on {self.poll.log[-1][1]}: {r.status_code} {r.text}"
            self.take(r)

    def held_then(self, action) -> float:
        """A GET from a thread, `action()` HELD_S later; the GET's reply is taken. Returns how
        long the GET was held."""
        held = HeldGet(self.poll)
        time.sleep(HELD_S)
        action()
        self.take(held.wait())
        return held.took


def has(*wanted):
    return lambda pkts: all(w in pkts for w in wanted)


def first_difference(a: list, b: list) -> str:
    i = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    return f"first difference at item {i}: {a[i:i + 3]} vs {b[i:i + 3]}; whole: {a} vs {b}"


def message(event: str, **data) -> str:
    return sio_event("message", {"event": event, "data": data})


BINARY_SAY = '451-%d["say",{"text":{"_placeholder":true,"num":0}}]'


def chat_script(home, route, room: str) -> tuple[Transcript, list[float]]:
    """Handshake on `home`; every later request on the next node of `route`: connect, join,
    a say while a GET is held, three says in one POST, two refused events, and the close
    packet while a GET is held, then a GET and a POST of the closed session."""
    poll = RoutedPolling(home, route, room)
    t = Transcript(poll)
    poll.open()
    t.items.append(("open", normalise(poll.handshake_body)))
    user = "relay-user"
    t.post("40")
    t.get_until(lambda pkts: any(p.startswith("40") for p in pkts))
    t.post(join_packet(user, ack=0))
    t.get_until(has('430[{"ok":true}]', message("join", username=user)))
    held = [t.held_then(lambda: t.post(say_packet("while held", ack=1)))]
    t.get_until(has('431[{"ok":true}]', message("broadcast_say", username=user,
                                                 text="while held")))
    t.post(RS.join(say_packet(x) for x in ("one", "two", "three")))
    t.get_until(has(*(message("broadcast_say", username=user, text=x)
                      for x in ("one", "two", "three"))))
    t.post(sio_event("nope", {}, 2))
    t.post(say_packet("x" * 5000, ack=3))
    t.get_until(lambda pkts: any(p.startswith("432") for p in pkts) and
                any(p.startswith("433") for p in pkts))
    # A binary event (one attachment, base64 in the payload): a say whose text is binary.
    t.post(BINARY_SAY % 4 + RS + "bAQI=")
    t.get_until(lambda pkts: any(p.startswith("434") for p in pkts))
    held.append(t.held_then(lambda: t.post("1")))
    t.take(poll.get())
    t.post(say_packet("after close"), expect_ok=False)
    return t, held


def test_sids_are_twenty_base64url_characters_with_a_tag_per_node(tags):
    print(f"tags {tags}")
    assert sorted(tags) == NAMES
    assert tags == {n: tag_for(n) for n in NAMES}, "the tags are not the documented FNV-1a ones"


def test_polling_alternating_between_three_nodes_gives_the_single_node_stream(mesh, tags):
    pinned_route, alternating_route = routes(mesh)
    pinned, pinned_held = chat_script(mesh["a1"], pinned_route, unique_room("pinned"))
    before = {n: relay_counts(mesh[n]) for n in NAMES}
    timed_before = {n: relay_latency_count(mesh[n]) for n in NAMES}
    route = Route(alternating_route)
    alternating, alt_held = chat_script(mesh["a1"], route, unique_room("alternating"))
    after = {n: relay_counts(mesh[n]) for n in NAMES}
    timed = {n: relay_latency_count(mesh[n]) - timed_before[n] for n in NAMES}
    relayed = sum(1 for n in route.sent if n != "a1")
    deltas = {n: counts_delta(before[n], after[n]) for n in NAMES}
    print(f"requests by node {dict((n, route.sent.count(n)) for n in NAMES)}; relay counters "
          f"{deltas}; relay latencies timed {timed}; GETs held {pinned_held} (pinned) {alt_held} (alternating)")
    print("\n".join(f"  {a!r:.110}   |   {b!r:.110}" for a, b in
                    zip(pinned.items, alternating.items)))

    assert alternating.poll.log[0] == ("GET", "a1", 200)
    assert {n for _, n, _ in alternating.poll.log[1:]} == set(NAMES), alternating.poll.log
    assert pinned.items == alternating.items, first_difference(pinned.items, alternating.items)
    # The script really exercised the session: its close answered the held GET with a noop,
    # and the closed session's later requests got the unknown-sid 400 (relayed ones too).
    assert ("packet", "6") in pinned.items
    assert pinned.items[-2][:2] == ("GET", 400) and json.loads(pinned.items[-2][2]) == UNKNOWN_SID
    assert pinned.items[-1][:2] == ("POST", 400)
    assert min(alt_held) >= HELD_S * 0.8, f"a relayed GET was not held: {alt_held}"
    # Every relayed request is counted once by the relay (a2, a3) and once by the owner (a1).
    relay_side = sum(sum(deltas[n].values()) for n in ("a2", "a3"))
    owner_side = sum(deltas["a1"].values())
    assert relay_side == relayed, (relayed, deltas)
    assert owner_side == relayed, (relayed, deltas)
    # The relay side times each one (request sent -> reply received); the owner times none.
    assert timed["a2"] + timed["a3"] == relayed and timed["a1"] == 0, timed


def upgrade_script(home, route, ws_node, room: str) -> list[str]:
    """Polling session on `home` (requests on `route`), then its WebSocket upgrade on
    `ws_node`: 2probe/3probe, the held GET released with a noop, 5, and chat over the socket.
    Returns every packet in order (normalised; GET packets, then WebSocket frames)."""
    poll = RoutedPolling(home, route, room)
    poll.open()
    got = [normalise(poll.handshake_body)]
    poll.send("40")
    got += [normalise(p) for p in poll.collect_until(lambda g: any(p.startswith("40") for p in g))]
    held = HeldGet(poll)
    time.sleep(HELD_S)
    ws = ws_connect(ws_node, room, sid=poll.sid)
    try:
        ws.send("2probe")
        got.append(ws.recv())
        r = held.wait()
        assert r.status_code == 200, (r.status_code, r.text)
        got += r.text.split(RS)
        ws.send("5")
        ws.settimeout(WAIT)
        # One event at a time: replies to events read in one tick overtake that tick's room
        # broadcasts (they are framed once at its end), locally too.
        for frames, until in (
                ([join_packet("upgrader", ack=7)], message("join", username="upgrader")),
                ([say_packet("over the socket")],
                 message("broadcast_say", username="upgrader", text="over the socket")),
                ([BINARY_SAY % 8, b"\x01\x02"], "438")):
            for f in frames:
                if isinstance(f, bytes):
                    ws.send_binary(f)
                else:
                    ws.send(f)
            while not any(str(x).startswith(until) for x in got):
                got.append(ws.recv())
        # After the upgrade, polling is over for this session.
        r = poll.get()
        got.append(f"GET {r.status_code}")
    finally:
        ws.close()
    return got


def test_websocket_upgrade_on_another_node_gives_the_single_node_stream(mesh, tags):
    pinned_route, alternating_route = routes(mesh)
    pinned = upgrade_script(mesh["a1"], pinned_route, mesh["a1"], unique_room("up-pinned"))
    before = relay_counts(mesh["a2"])
    relayed = upgrade_script(mesh["a1"], alternating_route, mesh["a2"], unique_room("up-relayed"))
    delta = counts_delta(before, relay_counts(mesh["a2"]))
    print(f"pinned {pinned}\nrelayed {relayed}\na2 relay counters {delta}")
    assert pinned[2:4] == ["3probe", "6"], pinned
    assert relayed == pinned
    assert any(k == "websocket" for k, _ in delta), f"a2 counted no relayed WebSocket: {delta}"


# --------------------------------------------------------------------------------------------
# Sids of nobody


def timed(fn):
    t0 = time.monotonic()
    r = fn()
    return r, time.monotonic() - t0


def test_sid_with_a_tag_of_no_node_gets_400_at_once_and_is_not_relayed(mesh, tags):
    sid = random_sid(unused_tag(tags))
    before = {n: relay_counts(mesh[n]) for n in NAMES}
    for name in NAMES:
        p = Polling(mesh[name], roomid="r1")
        p.sid = sid
        for what, call in (("GET", p.get), ("POST", lambda: p.post("40"))):
            r, took = timed(call)
            print(f"{what} {sid} on {name}: {r.status_code} {r.text} in {took * 1000:.1f} ms")
            assert r.status_code == 400 and engine_error(r) == UNKNOWN_SID, (name, what, r.text)
            assert took < 1.0, (name, what, took)
    after = {n: relay_counts(mesh[n]) for n in NAMES}
    assert all(counts_delta(before[n], after[n]) == {} for n in NAMES), (before, after)


@pytest.mark.parametrize("sid", ["", "abc", "A" * 19, "A" * 21, "!!!!" + "A" * 16,
                                 "%2F%2F" + "A" * 16, "A" * 2000])
def test_malformed_sid_gets_400_at_once_on_every_node(mesh, sid):
    for name in NAMES:
        p = Polling(mesh[name], roomid="r1")
        url = p.url(sid=False) + "&sid=" + sid
        r, took = timed(lambda: p.http.get(url, timeout=WAIT))
        assert r.status_code == 400, (name, sid, r.status_code, r.text)
        assert took < 1.0, (name, sid, took)
        mesh[name].assert_healthy()


def test_sid_of_another_node_gets_the_owners_400_relayed_promptly(mesh, tags):
    sid = random_sid(tags["a2"])
    before = {n: relay_counts(mesh[n]) for n in ("a1", "a2")}
    p = Polling(mesh["a1"], roomid="r1")
    p.sid = sid
    for what, call in (("GET", p.get), ("POST", lambda: p.post("40"))):
        r, took = timed(call)
        print(f"{what} a2's tag on a1: {r.status_code} {r.text} in {took * 1000:.1f} ms")
        assert r.status_code == 400 and engine_error(r) == UNKNOWN_SID, (what, r.text)
        assert took < 2.0, (what, took)
    # A WebSocket: refused at the upgrade (400), or (the relay completes the handshake before
    # the owner answers) closed at once without a single Engine.IO packet.
    t0 = time.monotonic()
    try:
        ws = ws_connect(mesh["a1"], "r1", sid=sid)
    except websocket.WebSocketBadStatusException as e:
        assert e.status_code == 400, e
        ws_end = f"upgrade refused {e.status_code}"
    else:
        frames = wait_closed(ws, timeout=2.0)
        ws.close()
        assert frames == [], f"the WebSocket for an unknown sid got packets: {frames}"
        ws_end = "upgraded, then closed"
    print(f"WebSocket with a2's tag on a1: {ws_end} after {(time.monotonic() - t0) * 1000:.1f} ms")
    after = {n: relay_counts(mesh[n]) for n in ("a1", "a2")}
    d1, d2 = (counts_delta(before[n], after[n]) for n in ("a1", "a2"))
    print(f"relay counters: a1 (relay) {d1}, a2 (owner) {d2}")
    # a1 relayed GET, POST and the WebSocket to a2, which answered each from its own sessions.
    assert {k for k, _ in d1} == {"get", "post", "websocket"}, d1
    assert {k for k, _ in d2} == {"get", "post", "websocket"}, d2
    assert d2.get(("get", "unknown_sid")) == 1 and d2.get(("post", "unknown_sid")) == 1, d2


# Bad requests that name a live session: (method, query, body, same answer as the owner's).
# Only polling GET and POST and WebSocket upgrades are relayed (docs/RELAY.md); a node answers
# the others itself, with a 400 of its own, so for them only the outcome for the session is
# compared.
BAD_REQUESTS = [
    ("POST", "EIO=4&transport=polling", "garbage\x1e\x1e", True),
    ("POST", "EIO=4&transport=polling", "", True),
    ("GET", "EIO=3&transport=polling", None, True),
    ("GET", "EIO=4&transport=flash", None, True),
    ("HEAD", "EIO=4&transport=polling", None, True),
    ("GET", "EIO=4&transport=websocket", None, False),    # no Upgrade header
    ("POST", "EIO=4&transport=websocket", "40", False),
    ("PUT", "EIO=4&transport=polling", "40", False),
    ("DELETE", "EIO=4&transport=polling", None, False),
]


@pytest.mark.parametrize("method,query,body,same", BAD_REQUESTS,
                         ids=[f"{m}-{q.split('&')[1]}-{b!r}" for m, q, b, _ in BAD_REQUESTS])
def test_bad_request_for_a_live_session_is_answered_as_on_the_owner(mesh, method, query, body,
                                                                     same):
    seen = {}
    for via in ("a1", "a2"):
        p = RoutedPolling(mesh["a1"], [mesh["a1"]], unique_room("bad"))
        p.open()
        url = f"{mesh[via].http}/socket.io/?{query}&roomid={p.roomid}&sid={p.sid}"
        r, took = timed(lambda: p.http.request(method, url, data=body, timeout=WAIT))
        after = p.post("40")   # on the owner: did the bad request end the session?
        seen[via] = (r.status_code, r.text, after.status_code)
        assert took < 1.0, (via, took)
        p.post("1")
    print(f"{method} {query} {body!r}: on the owner {seen['a1']}, on a2 {seen['a2']}")
    assert seen["a1"][0] == 400, seen
    if same:
        assert seen["a2"] == seen["a1"], seen
    else:
        assert (seen["a2"][0], seen["a2"][2]) == (seen["a1"][0], seen["a1"][2]), seen


# --------------------------------------------------------------------------------------------
# Limits the owner applies hold for relayed requests


def test_post_over_max_payload_gets_413_relayed_as_locally(mesh):
    seen = {}
    for via in ("a1", "a2"):
        p = RoutedPolling(mesh["a1"], [mesh[via]], unique_room("big"))
        p.open()
        r = p.post("4" + "x" * 1_000_001)
        try:  # the session's state afterwards: closed (400), or alive (the GET is held)
            after = p.get(timeout=1.0)
            then = f"{after.status_code} {after.text[:80]}"
        except requests.Timeout:
            then = "held"
        seen[via] = (r.status_code, then)
        print(f"POST over max_payload via {via}: {r.status_code} {r.text[:80]}; then GET {then}")
    assert seen["a1"][0] == 413, seen
    assert seen["a2"] == seen["a1"], seen


def test_post_just_under_max_payload_is_relayed_whole(mesh):
    """A 999,000-byte POST (one say far over text_max) crosses the mesh whole: the owner
    answers it with text_too_long, as for a local one."""
    acks = {}
    for via in ("a1", "a2"):
        p = RoutedPolling(mesh["a1"], [mesh[via]], unique_room("near-max"))
        p.open()
        p.connect_sio()
        p.send(join_packet("big"))
        p.collect_until(lambda g: any('"event":"join"' in x for x in g))
        body = say_packet("y" * 998_900, ack=5)
        assert len(body) < 1_000_000
        r = p.post(body)
        assert (r.status_code, r.text) == (200, "ok"), (via, r.status_code, r.text[:200])
        acks[via] = p.collect_until(lambda g: any(x.startswith("435") for x in g))
        p.post("1")
    print(f"acks {acks}")
    assert '"text_too_long"' in acks["a1"][0], acks
    assert acks["a2"] == acks["a1"]


def test_websocket_message_over_max_payload_closes_1009_relayed_as_locally(mesh):
    closes = {}
    for via in ("a1", "a2"):
        p = RoutedPolling(mesh["a1"], [mesh[via]], unique_room("ws-big"))
        p.open()
        p.connect_sio()
        ws = ws_connect(mesh[via], p.roomid, sid=p.sid)
        try:
            ws.send("2probe")
            ws.settimeout(WAIT)
            assert ws.recv() == "3probe"
            ws.send("5")
            # The head of a text frame one byte over max_payload: refused on its length alone.
            ws.sock.sendall(bytes([0x81, 0x80 | 127]) + (1_000_001).to_bytes(8, "big") +
                            os.urandom(4) + b"4" * 100)
            code = None
            deadline = time.monotonic() + WAIT
            while code is None and time.monotonic() < deadline:
                try:
                    op, data = ws.recv_data(control_frame=True)
                except (websocket.WebSocketConnectionClosedException, ConnectionError, OSError):
                    code = "closed without a close frame"
                    break
                if op == websocket.ABNF.OPCODE_CLOSE:
                    code = int.from_bytes(data[:2], "big") if len(data) >= 2 else "no code"
            closes[via] = code
        finally:
            ws.close()
    print(f"WebSocket message over max_payload: close {closes}")
    assert closes["a1"] == 1009, closes
    assert closes["a2"] == closes["a1"], closes


# --------------------------------------------------------------------------------------------
# Latency: alternating vs pinned


LATENCY_SAYS = 200
LATENCY_CHUNKS = 4


def say_delivery(home, get_route, post_route, room: str, n: int = 200,
                 gap_s: float = 0.01) -> list[float]:
    """One polling session made on `home`: a thread GETs without pause (each GET on the next
    node of `get_route`) while the main thread POSTs n says, `gap_s` apart (each on the next
    node of `post_route`). Returns say -> delivery (POST sent -> packet received) in ms."""
    poller = RoutedPolling(home, get_route, room)
    poller.open()
    poller.send("40")
    poller.collect_until(lambda g: any(p.startswith("40") for p in g))
    poller.send(join_packet("lat"))
    poller.collect_until(lambda g: any('"event":"join"' in p for p in g))
    poster = RoutedPolling(home, post_route, room)
    poster.sid = poller.sid
    sent: dict[int, float] = {}
    arrived: dict[int, float] = {}
    stop = threading.Event()
    errors = []

    def read():
        while not stop.is_set() and len(arrived) < n:
            try:
                r = poller.get(timeout=WAIT)
            except requests.RequestException as e:
                errors.append(e)
                return
            now = time.monotonic()
            if r.status_code != 200:
                errors.append((r.status_code, r.text))
                return
            for p in r.text.split(RS):
                m = re.search(r'"text":"lat-(\d+)"', p)
                if m:
                    arrived[int(m.group(1))] = now

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        time.sleep(0.1)
        for i in range(n):
            sent[i] = time.monotonic()
            r = poster.post(say_packet(f"lat-{i}"))
            assert r.status_code == 200 and r.text == "ok", (r.status_code, r.text)
            time.sleep(gap_s)
        wait_until(lambda: len(arrived) == n or errors, timeout=WAIT,
                   what=f"{n} says delivered (got {len(arrived)})")
    finally:
        stop.set()
        reader.join(timeout=WAIT + 1)
        poller.post("1")
    assert not errors, errors
    return [(arrived[i] - sent[i]) * 1000 for i in range(n)]


def test_say_delivery_latency_alternating_vs_pinned(mesh, tags):
    a1, a2, a3 = (mesh[n] for n in NAMES)
    pinned, alternating = [], []
    # In interleaved chunks, so that load from elsewhere on the machine falls on both alike.
    for _ in range(LATENCY_CHUNKS):
        pinned += say_delivery(a1, [a1], [a1], unique_room("lat-pinned"),
                               n=LATENCY_SAYS // LATENCY_CHUNKS)
        alternating += say_delivery(a1, [a2, a3, a1], [a3, a1, a2], unique_room("lat-alt"),
                                    n=LATENCY_SAYS // LATENCY_CHUNKS)
    for what, ms in (("pinned to its owner", pinned), ("alternating a1/a2/a3", alternating)):
        record_figure("test_relay latency",
                      f"polling say->delivery, {what}: p50 {percentile(ms, 50):.2f} ms, "
                      f"p99 {percentile(ms, 99):.2f} ms, max {max(ms):.2f} ms over {len(ms)} says")


# --------------------------------------------------------------------------------------------
# The owner's rules hold for relayed requests: Origin and CORS, rate limits, the heartbeat, and
# a client that goes away (a cluster of its own: short heartbeat, one allowed origin, slow says)

GOOD_ORIGIN = "http://good.example"
EVIL_ORIGIN = "http://evil.example"
STRICT_PING_MS = 500
STRICT_UPGRADE_MS = 600


@pytest.fixture(scope="module")
def strict(request):
    return module_mesh(request, NAMES,
                       engineio={"ping_interval": STRICT_PING_MS, "ping_timeout": STRICT_PING_MS,
                                 "allowed_origins": GOOD_ORIGIN,
                                 "upgrade_timeout": STRICT_UPGRADE_MS},
                       limits={"say_rate": 1, "say_burst": 3})


def cors(r: requests.Response) -> dict:
    return {k.lower(): v for k, v in r.headers.items() if k.lower().startswith("access-control-")}


def test_origin_and_cors_of_relayed_requests_are_the_owners(strict):
    """A relayed request is judged by the owner with the client's Origin: a foreign origin is
    refused as locally, and an allowed one gets the same CORS headers (the preflight too,
    whichever node answers it)."""
    seen = {}
    for via in ("a1", "a2"):
        p = RoutedPolling(strict["a1"], [strict[via]], unique_room("origin"))
        p.open()
        out = {}
        for origin in (GOOD_ORIGIN, EVIL_ORIGIN):   # a browser's CORS preflight of its POST
            r = p.http.options(p.url(), timeout=WAIT, headers={
                "Origin": origin, "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type"})
            out[f"OPTIONS {origin}"] = (r.status_code, r.text, cors(r))
        for origin in (GOOD_ORIGIN, EVIL_ORIGIN):
            r = p.http.post(p.url(), data="40", timeout=WAIT,
                            headers={"Origin": origin, "Content-Type": "text/plain;charset=UTF-8"})
            out[f"POST {origin}"] = (r.status_code, r.text, cors(r))
        # After the good POST 40 the CONNECT reply is queued: the GET returns at once.
        for origin in (EVIL_ORIGIN, GOOD_ORIGIN):
            r = p.http.get(p.url(), timeout=WAIT, headers={"Origin": origin})
            body = normalise(r.text) if r.status_code == 200 else r.text
            out[f"GET {origin}"] = (r.status_code, body, cors(r))
        try:
            ws = ws_connect(strict[via], p.roomid, sid=p.sid, header=[f"Origin: {EVIL_ORIGIN}"])
            out["WebSocket evil"] = ("upgraded", wait_closed(ws, timeout=2.0))
            ws.close()
        except websocket.WebSocketBadStatusException as e:
            out["WebSocket evil"] = (e.status_code, None)
        seen[via] = out
        p.post("1")
    for k in seen["a1"]:
        print(f"{k}: on the owner {seen['a1'][k]!r:.200}\n{' ' * len(k)}  relayed   {seen['a2'][k]!r:.200}")
    assert seen["a1"][f"POST {EVIL_ORIGIN}"][0] == 403, seen["a1"]
    assert seen["a1"][f"GET {GOOD_ORIGIN}"][0] == 200, seen["a1"]
    assert seen["a2"] == seen["a1"]


def test_rate_limit_of_relayed_says_is_the_owners(strict):
    """Five says in one POST, relayed or not: say_burst (3) pass, the rest get rate_limited."""
    outcomes = {}
    for via in ("a1", "a2"):
        p = RoutedPolling(strict["a1"], [strict[via], strict["a3"]], unique_room("rate"))
        p.open()
        p.connect_sio()
        p.send(join_packet("rater", ack=0))
        p.collect_until(lambda g: '430[{"ok":true}]' in g)
        p.send(RS.join(say_packet(f"s{i}", ack=i + 1) for i in range(5)))
        got = p.collect_until(lambda g: sum(1 for x in g if re.match(r"43[1-5]\[", x)) == 5)
        outcomes[via] = sorted(x for x in got if re.match(r"43[1-5]\[", x))
        p.post("1")
    print(f"acks on the owner {outcomes['a1']}\nacks relayed {outcomes['a2']}")
    assert sum('"rate_limited"' in a for a in outcomes["a1"]) == 2, outcomes
    assert outcomes["a2"] == outcomes["a1"]


def test_heartbeat_through_relays_keeps_the_session_and_silence_ends_it(strict):
    """ping_interval 500 ms: a relayed GET is held until the owner's ping and the pong goes
    back through another node, three times over; a client that stops answering is closed
    ping_interval + ping_timeout after its last pong, and relayed requests then get 400."""
    p = RoutedPolling(strict["a1"], [strict["a2"], strict["a3"]], unique_room("beat"))
    p.open()
    p.connect_sio()
    held = []
    for _ in range(3):
        t0 = time.monotonic()
        r = p.get()
        held.append(time.monotonic() - t0)
        assert (r.status_code, r.text) == (200, "2"), (r.status_code, r.text)
        p.send("3")
    t_silent = time.monotonic()
    r = p.get(timeout=WAIT)   # held until the next ping, which goes unanswered
    assert (r.status_code, r.text) == (200, "2"), (r.status_code, r.text)
    # Closed at the latest ping_interval + ping_timeout after the last pong.
    time.sleep(max(0.0, t_silent + 2 * STRICT_PING_MS / 1000 + 0.5 - time.monotonic()))
    ended = p.post("40")
    print(f"relayed GETs held {[round(h, 3) for h in held]} s until the ping; "
          f"{time.monotonic() - t_silent:.2f} s after its last pong the silent session "
          f"answers {ended.status_code} {ended.text}")
    assert all(STRICT_PING_MS / 1000 * 0.5 < h < STRICT_PING_MS / 1000 * 2 + 1.0 for h in held), held
    assert ended.status_code == 400 and engine_error(ended) == UNKNOWN_SID, ended.text


def held_get_abandoned(node, sid: str, room: str) -> None:
    """Sends a polling GET for `sid` on a raw socket to `node` and closes the socket while
    the GET is held (as a browser tab that goes away)."""
    s = socket.create_connection((node.host, node.port), timeout=WAIT)
    try:
        s.sendall(f"GET /socket.io/?EIO=4&transport=polling&roomid={room}&sid={sid} HTTP/1.1\r\n"
                  f"Host: {node.host}:{node.port}\r\n\r\n".encode())
        s.settimeout(HELD_S)
        try:
            data = s.recv(4096)
            raise AssertionError(f"the GET was not held: {data!r}")
        except socket.timeout:
            pass
    finally:
        s.close()


def test_client_gone_while_relayed_poll_held_ends_the_session_as_locally(strict):
    """A polling client whose held GET's connection closes is gone (the Node server's rule):
    its session ends and its room hears it quit, whether the GET was held on the owner or
    relayed (the relay cancels it on the owner)."""
    outcome = {}
    for via in ("a1", "a2"):
        room = unique_room("gone")
        # websocket-client sends an Origin of its own, which this cluster refuses: polling.
        watcher = strict.client("a3", room, transports=("polling",))
        watcher.join("watcher")
        p = RoutedPolling(strict["a1"], [strict["a3"]], room)
        p.open()
        p.connect_sio()
        p.send(join_packet("leaver"))
        p.collect_until(lambda g: any('"username":"leaver"' in x for x in g))
        t0 = time.monotonic()
        held_get_abandoned(strict[via], p.sid, room)
        watcher.wait_for(lambda evs: ("message", {"event": "broadcast_quit",
                                                  "data": {"username": "leaver"}}) in evs,
                         what=f"leaver's quit (GET held via {via})")
        took = time.monotonic() - t0
        r = p.get()
        outcome[via] = (r.status_code, r.text)
        print(f"GET held via {via} abandoned: quit seen after {took:.2f} s; next GET "
              f"{r.status_code} {r.text}")
        watcher.close()
    assert outcome["a1"] == (400, json.dumps(UNKNOWN_SID, separators=(",", ":"))), outcome
    assert outcome["a2"] == outcome["a1"], outcome


def probe_upgrade(node, poll: RoutedPolling, finish: bool = True):
    """A WebSocket for `poll`'s session on `node` (no Origin header): 2probe/3probe, the held
    GET released with a noop, then `5` if `finish`. Returns the socket."""
    held = HeldGet(poll)
    time.sleep(HELD_S)
    ws = ws_connect(node, poll.roomid, sid=poll.sid, suppress_origin=True)
    ws.send("2probe")
    ws.settimeout(WAIT)
    assert ws.recv() == "3probe"
    r = held.wait()
    assert (r.status_code, r.text) == (200, "6"), (r.status_code, r.text)
    if finish:
        ws.send("5")
    return ws


def test_client_closing_its_relayed_websocket_ends_the_session_as_locally(strict):
    outcome = {}
    for via in ("a1", "a2"):
        room = unique_room("ws-gone")
        watcher = strict.client("a3", room, transports=("polling",))
        watcher.join("watcher")
        p = connected_session(strict["a1"], [strict["a3"]], room, "wsq")
        ws = probe_upgrade(strict[via], p)
        ws.send(say_packet("about to go"))
        watcher.wait_for(lambda evs: any(isinstance(a, dict) and a.get("data", {}).get("text") ==
                                         "about to go" for _, a in evs), what="the last say")
        t0 = time.monotonic()
        ws.close()
        watcher.wait_for(lambda evs: ("message", {"event": "broadcast_quit",
                                                  "data": {"username": "wsq"}}) in evs,
                         what=f"wsq's quit (WebSocket on {via})")
        took = time.monotonic() - t0
        r = p.post("40")
        outcome[via] = (r.status_code, r.text)
        print(f"WebSocket on {via} closed by the client: quit seen after {took:.2f} s; "
              f"then POST {r.status_code} {r.text}")
        watcher.close()
    assert outcome["a1"][0] == 400, outcome
    assert outcome["a2"] == outcome["a1"], outcome


def test_unfinished_relayed_upgrade_times_out_and_polling_goes_on(strict):
    """A relayed probe that never sends 5: after upgrade_timeout the owner drops it (its
    WebSocket is closed) and the session goes on over polling, as for a local probe."""
    result = {}
    for via in ("a1", "a2"):
        p = connected_session(strict["a1"], [strict["a3"]], unique_room("no-5"), "slowpoke")
        ws = probe_upgrade(strict[via], p, finish=False)
        t0 = time.monotonic()
        closing: dict = {}

        def watch_probe():
            try:
                wait_closed(ws, timeout=STRICT_UPGRADE_MS / 1000 + 3)
                closing["after"] = time.monotonic() - t0
            except AssertionError as e:
                closing["error"] = e

        watcher = threading.Thread(target=watch_probe, daemon=True)
        watcher.start()
        # The session goes on over polling meanwhile, answering pings as a client does: with
        # pings every 0.5 s, a client that stopped polling for the probe's whole wait (longer
        # on a loaded machine) would lose its session to the ping timeout, not to the probe.
        early: list[str] = []
        try:
            while watcher.is_alive():
                packets = p.get_packets(timeout=WAIT)
                for pkt in packets:
                    if pkt == "2":
                        p.send("3")
                    else:
                        early.append(pkt)
                if packets == ["6"]:
                    time.sleep(0.05)  # polls are released at once while upgrading
        finally:
            watcher.join(WAIT)
            ws.close()
        assert "error" not in closing, closing["error"]
        closed_after = closing["after"]
        p.send(say_packet("still polling"))
        got = p.collect_until(lambda g: any('"text":"still polling"' in x for x in g))
        result[via] = [x for x in early + got if x not in ("2", "6")]
        print(f"probe on {via} without 5: closed after {closed_after:.2f} s; polling then got "
              f"{result[via]}")
        assert closed_after < STRICT_UPGRADE_MS / 1000 + 1.5, closed_after
        p.post("1")
    assert result["a2"] == result["a1"], result


# --------------------------------------------------------------------------------------------
# Redis mode does not relay (docs/RELAY.md: keep ip_hash there)


def test_redis_mode_answers_another_nodes_sid_with_400_and_relays_nothing(redis_server,
                                                                          cluster_factory):
    c = cluster_factory("redis", redis=redis_server, names=("a1", "a2"))
    p = RoutedPolling(c["a1"], [c["a2"]], unique_room("redis"))
    p.open()
    t0 = time.monotonic()
    r = p.post("40")
    took = time.monotonic() - t0
    print(f"redis mode: a1's session POSTed on a2: {r.status_code} {r.text} in {took * 1000:.1f} ms")
    assert r.status_code == 400 and engine_error(r) == UNKNOWN_SID, r.text
    assert took < 1.0, took
    assert all(sum(relay_counts(c[n]).values()) == 0 for n in ("a1", "a2"))
    p.route = Route([c["a1"]])   # on its own node the session is fine
    p.connect_sio()
