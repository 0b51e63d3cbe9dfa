"""Engine.IO v4 / Socket.IO v5 frames by hand, against shared/reference/original-wire.md."""

import json
import re
import threading
import time

import pytest
import requests
import websocket

from chatmesh_testkit import (WAIT, Polling, RawWS, handshake_regex, join_msg, say_msg,
                              sio_event, wait_closed, ws_connect)


def _error_response(r, code, message):
    assert r.status_code == 400, (r.status_code, r.text)
    assert r.text == json.dumps({"code": code, "message": message}, separators=(",", ":"))
    assert r.headers.get("Content-Type", "").startswith("application/json"), r.headers


def test_polling_handshake_body_and_content_type(node):
    r = requests.get(f"{node.http}/socket.io/?EIO=4&transport=polling&roomid=r1", timeout=WAIT)
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "text/plain; charset=UTF-8"
    assert handshake_regex('["websocket"]').match(r.text), r.text


def test_websocket_only_handshake_offers_no_upgrades(node):
    ws = ws_connect(node, "r1-raw")
    try:
        first = ws.recv()
        assert isinstance(first, str)
        assert handshake_regex("[]").match(first), first
    finally:
        ws.close()


@pytest.mark.chatmesh(engineio={"ping_interval": 1234, "ping_timeout": 567, "max_payload": 4321})
def test_handshake_reports_configured_engineio_values(node):
    p = Polling(node)
    p.open()
    assert handshake_regex('["websocket"]', 1234, 567, 4321).match(p.handshake_body), \
        p.handshake_body


def test_eio3_is_rejected_as_unsupported_protocol_version(node):
    r = requests.get(f"{node.http}/socket.io/?EIO=3&transport=polling&roomid=r1", timeout=WAIT)
    _error_response(r, 5, "Unsupported protocol version")


def test_unknown_sid_is_rejected(node):
    r = requests.get(f"{node.http}/socket.io/?EIO=4&transport=polling&roomid=r1"
                     f"&sid=AAAAAAAAAAAAAAAAAAAA", timeout=WAIT)
    _error_response(r, 1, "Session ID unknown")
    r = requests.post(f"{node.http}/socket.io/?EIO=4&transport=polling&roomid=r1"
                      f"&sid=AAAAAAAAAAAAAAAAAAAA", data="40", timeout=WAIT)
    _error_response(r, 1, "Session ID unknown")


def test_unknown_transport_is_rejected(node):
    r = requests.get(f"{node.http}/socket.io/?EIO=4&transport=carrier-pigeon&roomid=r1",
                     timeout=WAIT)
    _error_response(r, 0, "Transport unknown")


def test_second_concurrent_polling_get_is_rejected_with_code_3(node):
    p = Polling(node)
    p.open()
    first = {}

    def long_poll():
        try:
            first["r"] = p.get(timeout=WAIT)
        except Exception as e:  # the session may be closed under it
            first["e"] = e

    t = threading.Thread(target=long_poll, daemon=True)
    t.start()
    time.sleep(0.2)  # let the first GET reach the server and park (not a speed assertion)
    r = requests.get(p.url(), timeout=WAIT)
    assert r.status_code == 400, (r.status_code, r.text)
    assert r.json()["code"] == 3, r.text
    t.join(WAIT + 1)
    node.assert_healthy()


def test_polling_socketio_connect_then_get_returns_sid(node):
    p = Polling(node)
    p.open()
    r = p.post("40")
    assert (r.status_code, r.text) == (200, "ok")
    r = p.get()
    assert r.status_code == 200
    assert re.fullmatch(r'40\{"sid":"[A-Za-z0-9_\-]{1,64}"\}', r.text), r.text
    assert json.loads(r.text[2:])["sid"] != p.sid  # Socket.IO sid differs from Engine.IO sid


def test_websocket_socketio_connect_returns_sid(node):
    w = RawWS(node)
    try:
        w.send("40")
        f = w.recv()
        assert re.fullmatch(r'40\{"sid":"[A-Za-z0-9_\-]{1,64}"\}', f), f
    finally:
        w.close()


def test_chat_frames_over_raw_polling_and_websocket(node):
    """The transcript's chat section: carol on ws, dave on polling."""
    carol = RawWS(node, "r1")
    carol.connect_sio()
    carol.send('42["join",{"username":"carol"}]')
    assert carol.recv() == '42["message",{"event":"join","data":{"username":"carol"}}]'
    dave = Polling(node, "r1")
    dave.open()
    dave.connect_sio()
    dave.send('42["join",{"username":"dave"}]')
    assert carol.recv() == '42["message",{"event":"join","data":{"username":"dave"}}]'
    dave.send('42["say",{"text":"hi"}]')
    want = '42["message",{"event":"broadcast_say","data":{"username":"dave","text":"hi"}}]'
    assert carol.recv() == want
    got = dave.collect_until(lambda g: want in g)
    assert got == ['42["message",{"event":"join","data":{"username":"dave"}}]', want]
    dave.send("41")  # namespace disconnect
    assert carol.recv() == '42["message",{"event":"broadcast_quit","data":{"username":"dave"}}]'
    carol.close()


def test_polling_to_websocket_upgrade_by_hand(node):
    p = Polling(node, "r-up")
    p.open()
    p.connect_sio()
    pending = {}

    def long_poll():
        try:
            pending["r"] = p.get(timeout=WAIT + 2)
        except Exception as e:
            pending["e"] = e

    t = threading.Thread(target=long_poll, daemon=True)
    t.start()
    time.sleep(0.2)  # the GET is parked on the server before the probe (ordering, not speed)
    ws = ws_connect(node, "r-up", sid=p.sid)
    try:
        ws.send("2probe")
        assert ws.recv() == "3probe"
        t.join(WAIT)
        assert "r" in pending, pending
        assert pending["r"].status_code == 200
        assert pending["r"].text == "6"
        ws.send("5")
        ws.send('42["join",{"username":"upgraded"}]')
        assert ws.recv() == sio_event("message", join_msg("upgraded"))
        ws.send('42["say",{"text":"over ws now"}]')
        assert ws.recv() == sio_event("message", say_msg("upgraded", "over ws now"))
    finally:
        ws.close()


@pytest.mark.chatmesh(engineio={"ping_interval": 300, "ping_timeout": 300})
def test_heartbeat_answered_keeps_the_session_open(node):
    w = RawWS(node, "r-hb")
    assert '"pingInterval":300,"pingTimeout":300' in w.open_packet
    w.connect_sio()
    pings = 0
    end = time.monotonic() + 2.2
    while time.monotonic() < end:
        w.ws.settimeout(max(0.01, end - time.monotonic()))
        try:
            f = w.ws.recv()
        except websocket.WebSocketTimeoutException:
            break
        assert f == "2", f
        pings += 1
        w.send("3")
    assert pings >= 3
    w.join("still-here")  # the session is alive and usable after > 2 s
    w.close()


@pytest.mark.chatmesh(engineio={"ping_interval": 300, "ping_timeout": 300})
def test_heartbeat_unanswered_closes_the_session(node, clients):
    start = time.monotonic()
    w = RawWS(node, "r-hb2")
    w.connect_sio()
    w.join("silent")
    watcher = clients("r-hb2")  # python-socketio answers pings itself
    watcher.join("watcher")
    frames = wait_closed(w.ws, timeout=WAIT)
    elapsed = time.monotonic() - start
    assert set(frames) <= {"2", '42["message",{"event":"join","data":{"username":"watcher"}}]'}
    assert 0.5 <= elapsed <= 3.0, elapsed  # about ping_interval + ping_timeout
    evs = watcher.wait_for(lambda e: ("message", {"event": "broadcast_quit",
                                                  "data": {"username": "silent"}}) in e)
    assert evs[0] == ("message", join_msg("watcher"))
    assert node.healthz()["connections"] == 1


def test_unknown_namespace_is_refused(node):
    w = RawWS(node)
    try:
        w.send("40/admin,")
        assert w.recv() == '44/admin,{"message":"Invalid namespace"}'
        # the main namespace still works on the same connection
        w.connect_sio()
    finally:
        w.close()


def test_binary_say_is_an_error_and_is_not_broadcast(clients):
    alice = clients("r-bin")
    bob = clients("r-bin")
    alice.join("alice")
    bob.join("bob")
    alice.wait_count(2)
    bob.emit("say", {"text": b"\x00\x01binary\xff"})
    err = bob.wait_event("error")
    assert err["reason"] in ("invalid_text", "invalid_event"), err
    assert isinstance(err.get("message"), str) and err["message"], err
    bob.say("marker")
    assert alice.wait_count(3) == [("message", join_msg("alice")), ("message", join_msg("bob")),
                                   ("message", say_msg("bob", "marker"))]


def test_socketio_ack_ids_are_answered(node):
    w = RawWS(node, "r-ackid")
    try:
        w.connect_sio()
        w.send('4212["join",{"username":"acker"}]')
        got = w.recv_until(lambda g: "4312[{\"ok\":true}]" in g and len(g) >= 2)
        assert sorted(got) == sorted(['4312[{"ok":true}]', sio_event("message", join_msg("acker"))])
        w.send('427["say",{"text":"with id"}]')
        got = w.recv_until(lambda g: len(g) >= 2)
        assert sorted(got) == sorted(['437[{"ok":true}]',
                                      sio_event("message", say_msg("acker", "with id"))])
        w.send('428["say",{"text":5}]')
        got = w.recv_until(lambda g: any(f.startswith("438[") for f in g))
        ack = next(f for f in got if f.startswith("438["))
        body = json.loads(ack[3:])
        assert len(body) == 1 and body[0]["ok"] is False, ack
        assert body[0]["error"] == "invalid_text", ack
    finally:
        w.close()


def test_polling_payload_with_several_packets(node):
    """Several packets in one POST body, separated by \\x1e, are handled in order."""
    p = Polling(node, "r-multi")
    p.open()
    p.connect_sio()
    p.send('42["join",{"username":"multi"}]', '42["say",{"text":"one"}]',
           '42["say",{"text":"two"}]')
    want = [sio_event("message", join_msg("multi")), sio_event("message", say_msg("multi", "one")),
            sio_event("message", say_msg("multi", "two"))]
    assert p.collect_until(lambda g: len(g) >= 3) == want
