"""Bad input is contained: the offender gets a clear error, everyone else carries on."""

import json
import random
import re
import socket
import time

import pytest
import requests
import socketio
import websocket

from chatmesh_testkit import (RS, WAIT, Polling, RawWS, join_msg, raw_ws_upgrade, say_msg,
                              recv_until_closed, sio_event, wait_closed, ws_connect,
                              ws_frame)

M = "message"


@pytest.fixture
def bystanders(clients, node):
    """Two joined clients in room "calm"; .check() proves they are unaffected."""

    class Bystanders:
        def __init__(self):
            self.alice = clients("calm", transports=["websocket"])
            self.bob = clients("calm", transports=["polling"])
            self.alice.join("alice")
            self.bob.join("bob")
            self.alice.wait_count(2)
            self.n = 0

        def check(self):
            self.n += 1
            text = f"still fine {self.n}"
            self.alice.say(text)
            want = (M, say_msg("alice", text))
            for c in (self.alice, self.bob):
                evs = c.wait_for(lambda e: want in e, what=repr(want))
                # no error or stray event reached them, only room messages
                assert all(e == M for e, _ in evs), evs
            assert node.assert_healthy()["status"] == "ok"

    return Bystanders()


# ---------------------------------------------------------------------------------------------
# Engine.IO / transport level


@pytest.mark.chatmesh(engineio={"max_payload": 10000})
def test_oversized_polling_post_is_rejected_with_413(node, bystanders):
    p = Polling(node, "calm")
    p.open()
    p.connect_sio()
    body = '42["say",{"text":"' + "x" * 20000 + '"}]'
    r = p.post(body)
    assert r.status_code == 413, (r.status_code, r.text[:200])
    bystanders.check()


def test_the_path_without_its_slash_gets_max_payload_not_the_small_limit_of_other_paths(node):
    # 70 KB: over the 64 KiB that non-Engine.IO paths accept, under the default max_payload.
    p = Polling(node, "calm")
    p.open()
    p.connect_sio()
    url = p.url().replace("/socket.io/?", "/socket.io?", 1)
    assert "/socket.io?" in url
    body = '42["no-such-event","' + "x" * 70_000 + '"]'
    r = p.http.post(url, data=body, timeout=WAIT, headers={"Content-Type": "text/plain;charset=UTF-8"})
    assert r.status_code == 200, (r.status_code, r.text[:200])
    assert r.text == "ok"


@pytest.mark.chatmesh(engineio={"max_payload": 10000})
def test_oversized_websocket_message_closes_the_connection(node, bystanders):
    w = RawWS(node, "calm")
    w.connect_sio()
    w.join("big")
    w.send('42["say",{"text":"' + "x" * 20000 + '"}]')
    frames = wait_closed(w.ws)
    assert not any("x" * 100 in f for f in frames if isinstance(f, str)), "oversized say echoed"
    bystanders.check()
    evs = bystanders.alice.snapshot()
    assert all(a["event"] != "broadcast_say" or a["data"]["username"] != "big" for _, a in evs)


@pytest.mark.chatmesh(engineio={"max_payload": 10000})
def test_websocket_message_just_under_max_payload_is_accepted(node):
    w = RawWS(node, "calm")
    w.connect_sio()
    w.join("fits")
    text = "y" * 4000
    w.send(sio_event("say", {"text": text}))
    assert w.recv() == sio_event(M, say_msg("fits", text))
    w.close()


def _cut_server_frames(buf: bytearray) -> list[tuple[int, bytes]]:
    """Cuts the whole server frames (unmasked) off the front of buf: (opcode, payload) each."""
    frames = []
    while len(buf) >= 2:
        op, n, off = buf[0] & 0x0F, buf[1] & 0x7F, 2
        if n == 126:
            if len(buf) < 4:
                break
            n, off = int.from_bytes(buf[2:4], "big"), 4
        elif n == 127:
            if len(buf) < 10:
                break
            n, off = int.from_bytes(buf[2:10], "big"), 10
        if len(buf) < off + n:
            break
        frames.append((op, bytes(buf[off:off + n])))
        del buf[:off + n]
    return frames


def _server_frames(s, rest: bytes, until, timeout=WAIT) -> list[tuple[int, bytes]]:
    """Reads server frames (opcode, payload) until `until(frames)` holds; fails on EOF or timeout."""
    buf, frames = bytearray(rest), []
    deadline = time.monotonic() + timeout
    while True:
        frames += _cut_server_frames(buf)
        if until(frames):
            return frames
        left = deadline - time.monotonic()
        assert left > 0, f"timed out; frames so far: {frames}"
        s.settimeout(left)
        chunk = s.recv(65536)
        assert chunk, f"closed; frames so far: {frames}"
        buf += chunk


def test_fragmented_websocket_message_is_joined_with_a_ping_between_fragments(node, bystanders):
    s, rest = raw_ws_upgrade(node, "calm")
    try:
        s.sendall(ws_frame(0x1, b"40"))
        join = b'42["join",{"username":"frag"}]'
        s.sendall(ws_frame(0x1, join[:5], fin=False) + ws_frame(0x9, b"hi")
                  + ws_frame(0x0, join[5:12], fin=False) + ws_frame(0x0, join[12:]))
        want = json.dumps([M, join_msg("frag")], separators=(",", ":")).encode()
        frames = _server_frames(s, rest, lambda fs: any(p == b"42" + want for _, p in fs))
        assert (0xA, b"hi") in frames, frames
    finally:
        s.close()
    bystanders.check()


@pytest.mark.chatmesh(engineio={"max_payload": 10000})
@pytest.mark.parametrize("fragmented", [False, True])
def test_message_over_max_payload_is_closed_with_1009(node, bystanders, fragmented):
    s, rest = raw_ws_upgrade(node, "calm")
    try:
        s.sendall(ws_frame(0x1, b"40"))
        big = b'42["say",{"text":"' + b"x" * 12000 + b'"}]'
        if fragmented:
            s.sendall(b"".join(ws_frame(0x1 if i == 0 else 0x0, big[i:i + 4000], fin=False)
                               for i in range(0, len(big), 4000)))
        else:
            s.sendall(ws_frame(0x1, big))
        frames = _server_frames(s, rest, lambda fs: any(op == 0x8 for op, _ in fs))
        close = next(p for op, p in frames if op == 0x8)
        assert int.from_bytes(close[:2], "big") == 1009, close
    finally:
        s.close()
    bystanders.check()


def _closed_raw(s, rest: bytes, timeout=WAIT) -> str:
    """Reads server frames until a close frame or EOF; returns how it ended."""
    buf = bytearray(rest)

    def close_frame(chunk: bytes = b""):
        buf.extend(chunk)
        for op, payload in _cut_server_frames(buf):
            if op == 0x8:
                return "close frame " + payload[:2].hex()
        return None

    return close_frame() or recv_until_closed(s, timeout, close_frame)


_rng = random.Random(20240601)
GARBAGE_FRAMES = {
    "random_bytes_with_rsv_bits": bytes([0xF1]) + _rng.randbytes(255),
    "unmasked_client_frame": ws_frame(0x1, b'42["say",{"text":"no mask"}]', mask=False),
    "reserved_opcode_3": ws_frame(0x3, b"hello"),
    "reserved_control_opcode_b": ws_frame(0xB, b""),
    "invalid_utf8_text_frame": ws_frame(0x1, b"42[\"say\",{\"text\":\"\xff\xfe\xc3\x28\"}]"),
    "continuation_without_start": ws_frame(0x0, b"orphan"),
    "fragmented_ping": ws_frame(0x9, b"x", fin=False),
    "control_frame_over_125_bytes": ws_frame(0x9, b"p" * 200),
    "length_over_max_payload_64bit": bytes([0x81, 0xFF]) + (1 << 62).to_bytes(8, "big")
    + b"\x00\x00\x00\x00" + b"zz",
}


@pytest.mark.parametrize("kind", sorted(GARBAGE_FRAMES))
def test_garbage_websocket_frames_close_the_connection(node, bystanders, kind):
    s, rest = raw_ws_upgrade(node, "calm")
    try:
        s.sendall(ws_frame(0x1, b"40"))
        s.sendall(GARBAGE_FRAMES[kind])
        how = _closed_raw(s, rest)
        assert how in ("eof", "reset") or how.startswith("close frame"), how
    finally:
        s.close()
    bystanders.check()


def _session_closed_or_400(p: Polling, r: requests.Response):
    """After a bad POST: either a 400 with a JSON error body, or the session is closed."""
    if r.status_code == 400:
        body = r.json()
        assert isinstance(body, dict) and "code" in body and "message" in body, r.text
        return "400 " + r.text
    assert r.status_code == 200, (r.status_code, r.text)
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        try:
            g = p.get(timeout=WAIT)
        except requests.exceptions.ReadTimeout:
            raise AssertionError(f"session still open after a garbage POST ({r.text!r})")
        if g.status_code == 400:
            assert g.json()["code"] in (1, 3), g.text
            return "closed: 400 " + g.text
        assert g.status_code == 200, (g.status_code, g.text)
        pkts = g.text.split(RS)
        if "1" in pkts or "41" in pkts:
            return "closed: " + g.text
    raise AssertionError("session still open after a garbage POST")


@pytest.mark.parametrize("body", ["zzz", "4", "4zzz", '42["say"', "42[]", "\x1e\x1e"])
def test_garbage_polling_post_bodies_are_rejected(node, bystanders, body):
    p = Polling(node, "calm")
    p.open()
    p.connect_sio()
    r = p.post(body)
    _session_closed_or_400(p, r)
    bystanders.check()


def test_unknown_sid_is_rejected_on_every_transport(node, bystanders):
    base = f"{node.http}/socket.io/?EIO=4&roomid=calm&sid=doesnotexist0000000"
    r = requests.get(base + "&transport=polling", timeout=WAIT)
    assert (r.status_code, r.json()) == (400, {"code": 1, "message": "Session ID unknown"})
    r = requests.post(base + "&transport=polling", data='42["say",{"text":"x"}]', timeout=WAIT)
    assert (r.status_code, r.json()) == (400, {"code": 1, "message": "Session ID unknown"})
    with pytest.raises(websocket.WebSocketBadStatusException) as e:
        ws_connect(node, "calm", sid="doesnotexist0000000")
    assert e.value.status_code == 400
    bystanders.check()


def test_invalid_query_values_are_rejected(node, bystanders):
    unsupported = {"code": 5, "message": "Unsupported protocol version"}
    r = requests.get(f"{node.http}/socket.io/?EIO=abc&transport=polling&roomid=calm",
                     timeout=WAIT)
    assert (r.status_code, r.json()) == (400, unsupported)
    r = requests.get(f"{node.http}/socket.io/?transport=polling&roomid=calm", timeout=WAIT)
    assert (r.status_code, r.json()) == (400, unsupported)
    bystanders.check()


# ---------------------------------------------------------------------------------------------
# Chat protocol level


def test_say_before_join_is_an_error_not_joined(clients, bystanders):
    eve = clients("calm")
    eve.say("who am i")
    err = eve.wait_event("error")
    assert err["reason"] == "not_joined" and isinstance(err["message"], str), err
    assert set(err) == {"reason", "message"}, err
    assert eve.snapshot() == [("error", err)]
    bystanders.check()


def test_over_long_text_is_an_error_text_too_long(clients, bystanders):
    eve = clients("calm")
    eve.join("eve")
    eve.say("z" * 4097)
    err = eve.wait_event("error")
    assert err["reason"] == "text_too_long", err
    eve.say("z" * 4096)  # exactly the limit is fine
    eve.wait_for(lambda e: (M, say_msg("eve", "z" * 4096)) in e)
    bystanders.check()
    assert (M, say_msg("eve", "z" * 4097)) not in bystanders.bob.snapshot()


@pytest.mark.parametrize("text", [None, 5, ["list"], {"nested": "obj"}, True])
def test_text_that_is_not_a_string_is_an_error_invalid_text(clients, bystanders, text):
    eve = clients("calm")
    eve.join("eve")
    eve.emit("say", {"text": text})
    assert eve.wait_event("error")["reason"] == "invalid_text"
    bystanders.check()


@pytest.mark.parametrize("username", ["", "u" * 65, 5, None], ids=["empty", "65-chars", "number",
                                                                    "null"])
def test_bad_username_is_an_error_invalid_username(clients, bystanders, username):
    eve = clients("calm")
    eve.emit("join", {"username": username})
    err = eve.wait_event("error")
    assert err["reason"] == "invalid_username", err
    eve.say("not joined")
    assert [a["reason"] for e, a in eve.wait_count(2)] == ["invalid_username", "not_joined"]
    bystanders.check()


def test_username_of_64_chars_is_accepted(clients):
    eve = clients("calm2")
    eve.join("u" * 64)
    assert eve.snapshot() == [(M, join_msg("u" * 64))]


def test_second_join_is_an_error_already_joined(clients, bystanders):
    eve = clients("calm")
    eve.join("eve")
    eve.emit("join", {"username": "eve2"})
    assert eve.wait_event("error")["reason"] == "already_joined"
    bystanders.check()


def test_unknown_event_is_ignored_or_acked_invalid_event(clients, bystanders):
    """Unknown events are ignored (as socket.io does without a handler); an ack gets an error."""
    eve = clients("calm")
    eve.join("eve")
    eve.emit("shout", {"text": "x"})
    ack = eve.call("shout", {"text": "x"})
    assert ack["ok"] is False and ack["error"] == "invalid_event", ack
    eve.say("marker")
    assert eve.wait_count(2) == [(M, join_msg("eve")), (M, say_msg("eve", "marker"))]
    bystanders.check()


@pytest.mark.parametrize("event,payload,joined",
                         [("say", "bare string", True), ("say", None, True),
                          ("say", ["text"], True), ("join", "bare string", False),
                          ("join", ["array"], False), ("join", None, False)],
                         ids=["say-string", "say-no-arg", "say-array", "join-string",
                              "join-array", "join-no-arg"])
def test_payload_of_the_wrong_shape_is_an_error(clients, bystanders, event, payload, joined):
    eve = clients("calm")
    if joined:
        eve.join("eve")
    eve.emit(event, payload)
    err = eve.wait_event("error")
    assert err["reason"] in ("invalid_event", "invalid_text", "invalid_username"), err
    bystanders.check()


@pytest.mark.parametrize("roomid", [None, "r" * 129, "", "bad\x01room"],
                         ids=["missing", "129-chars", "empty", "control-char"])
def test_bad_roomid_is_a_connect_error(clients, node, bystanders, roomid):
    eve = clients(roomid, connect=False)
    with pytest.raises(socketio.exceptions.ConnectionError):
        eve.connect()
    assert eve.connect_errors, "no connect_error delivered"
    err = eve.connect_errors[0]
    assert err["data"] == {"reason": "invalid_roomid"}, err
    assert isinstance(err["message"], str) and err["message"], err
    bystanders.check()


def test_bad_roomid_connect_error_frame(node):
    w = RawWS(node, None)
    try:
        w.send("40")
        f = w.recv()
        assert re.fullmatch(r'44\{"message":"[^"]+","data":\{"reason":"invalid_roomid"\}\}', f), f
        assert json.loads(f[2:])["data"] == {"reason": "invalid_roomid"}, f
        assert list(json.loads(f[2:])) == ["message", "data"], f
    finally:
        w.close()


def test_roomid_of_128_chars_is_accepted(clients):
    room = "r" * 128
    eve = clients(room)
    eve.join("eve")
    assert eve.snapshot() == [(M, join_msg("eve"))]


# ---------------------------------------------------------------------------------------------
# Resource limits

BURST, RATE = 40, 20  # the defaults in cluster.conf [limits]


def test_rate_limit_burst_gets_rate_limited_errors(clients, bystanders):
    spammer = clients("calm")
    spammer.join("spammer")
    t0 = time.monotonic()
    for i in range(100):
        spammer.say(f"spam {i}")
    evs = spammer.wait_for(lambda e: sum(1 for x, a in e if x == "error" or
                                         a.get("data", {}).get("username") == "spammer"
                                         and a["event"] == "broadcast_say") >= 100,
                           what="100 says answered")
    elapsed = time.monotonic() - t0
    says = [a["data"]["text"] for e, a in evs if e == M and a["event"] == "broadcast_say"]
    errors = [a for e, a in evs if e == "error"]
    assert errors, "no rate_limited error for 100 says at once"
    assert {e["reason"] for e in errors} == {"rate_limited"}, errors
    assert len(says) + len(errors) == 100
    assert len(says) <= BURST + RATE * elapsed + 1, (len(says), elapsed)
    assert len(says) >= BURST, len(says)
    # the room saw exactly what the spammer saw, in order
    bob_says = lambda: [a["data"]["text"] for e, a in bystanders.bob.snapshot()  # noqa: E731
                        if e == M and a["event"] == "broadcast_say"
                        and a["data"]["username"] == "spammer"]
    bystanders.bob.wait_for(lambda e: len(bob_says()) >= len(says))
    assert bob_says() == says
    # the spammer is still connected and may speak again once tokens refill
    deadline = time.monotonic() + WAIT
    while spammer.call("say", {"text": "calm now"}) != {"ok": True}:
        assert time.monotonic() < deadline, "rate limit never recovered"
        time.sleep(0.1)
    bystanders.check()


FLOOD_TEXT = 30000  # characters per say (text_max raised for this test)
FLOOD_MAX_SAYS = 700  # 21 MB at most; the cut-off came after about 3 MB here (kernel buffers)
FLOOD_AFTER_CUT = 20  # says sent after the slow reader is gone
FLOOD_ROUND = 2  # says per round: 60 kB, under outbound_buffer


def _seq(evs):
    """The flood's sequence numbers, so that a mismatch prints readably."""
    def one(a):
        text = a.get("data", {}).get("text") if isinstance(a, dict) else None
        if isinstance(text, str) and text[5:] == "f" * (FLOOD_TEXT - 5):
            return int(text[:5])
        return a
    return [one(a) for _, a in evs]


@pytest.mark.chatmesh(limits={"outbound_buffer": 65536, "say_rate": 100000,
                              "say_burst": 100000, "text_max": FLOOD_TEXT})
def test_client_that_stops_reading_is_disconnected_and_others_keep_receiving(node, clients):
    slow = RawWS(node, "flood", sockopt=[(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)])
    slow.connect_sio()
    slow.join("slow")
    observer = clients("flood", transports=["websocket"])
    observer.join("observer")
    flooder = clients("flood", transports=["websocket"])
    flooder.join("flooder")
    observer.wait_count(2)
    assert node.healthz()["connections"] == 3
    texts = []
    # Each round is read by the two live clients before the next is sent: they keep up by
    # construction, only the one that never reads falls behind. Flood until it is cut off.
    cut_at = None
    while len(texts) < FLOOD_MAX_SAYS and (cut_at is None or len(texts) < cut_at + FLOOD_AFTER_CUT):
        k = len(texts)
        for i in range(k, k + FLOOD_ROUND):
            texts.append(f"{i:05d}" + "f" * (FLOOD_TEXT - 5))
            flooder.say(texts[-1])
        n = len(texts)
        for who, c, n0 in (("observer", observer, 2), ("flooder", flooder, 1)):
            try:
                c.wait_for(lambda e: len(e) >= n0 + n, what=f"flood round {k}")
            except AssertionError:
                seen = [x for x in _seq(c.snapshot()) if isinstance(x, int)]
                missing = sorted(set(range(n)) - set(seen))
                raise AssertionError(
                    f"{who} lost flood messages: sent 0..{n - 1}, received {len(seen)}, "
                    f"missing {missing[:20]}, out of order: {seen != sorted(seen)}, "
                    f"other events: {[x for x in _seq(c.snapshot()) if not isinstance(x, int)]}"
                    f", connected: {c.sio.connected}") from None
        if cut_at is None and node.healthz()["connections"] == 2:
            cut_at = n
    assert cut_at is not None, f"reader that never reads still connected after {n} says " \
                               f"of {FLOOD_TEXT} characters"
    want = [(M, say_msg("flooder", t)) for t in texts]
    node.wait_health(lambda h: h["connections"] == 2, timeout=20)
    last = want[-1]
    got = [x for x in observer.wait_for(lambda e: last in e[-5:], timeout=30,
                                        what="the last flood message")
           if x[1]["event"] == "broadcast_say"]
    assert _seq(got) == _seq(want)
    fl = [x for x in flooder.wait_for(lambda e: last in e[-5:], timeout=30,
                                      what="the last flood message")
          if x[1]["event"] == "broadcast_say"]
    assert _seq(fl) == _seq(want)
    wait_closed(slow.ws, timeout=10)  # drains what the kernel held, then sees the close
    observer.say("after the flood")
    flooder.wait_for(lambda e: (M, say_msg("observer", "after the flood")) in e)
    node.assert_healthy()
    m = node.metrics()
    assert m.get("chatmesh_connections") == 2
