"""The original chat protocol: join / say / quit reach the whole room, and nothing else does."""

import threading

import pytest

from chatmesh_testkit import WAIT, join_msg, quit_msg, say_msg

M = "message"


def test_join_is_broadcast_to_the_whole_room_including_the_joiner(clients):
    alice = clients("room-join")
    bob = clients("room-join")
    alice.join("alice")
    assert alice.wait_count(1) == [(M, join_msg("alice"))]
    bob.join("bob")
    assert bob.wait_count(1) == [(M, join_msg("bob"))]
    assert alice.wait_count(2) == [(M, join_msg("alice")), (M, join_msg("bob"))]


def test_say_reaches_the_whole_room_including_the_sender(clients):
    alice = clients("room-say")
    bob = clients("room-say")
    alice.join("alice")
    bob.join("bob")
    alice.wait_count(2)
    bob.say("hi alice")
    assert alice.wait_count(3) == [(M, join_msg("alice")), (M, join_msg("bob")),
                                   (M, say_msg("bob", "hi alice"))]
    assert bob.wait_count(2) == [(M, join_msg("bob")), (M, say_msg("bob", "hi alice"))]


def test_disconnect_broadcasts_quit_to_the_rest_of_the_room(clients):
    alice = clients("room-quit")
    bob = clients("room-quit")
    alice.join("alice")
    bob.join("bob")
    alice.wait_count(2)
    bob.disconnect()
    assert alice.wait_count(3) == [(M, join_msg("alice")), (M, join_msg("bob")),
                                   (M, quit_msg("bob"))]


def test_abrupt_transport_close_also_broadcasts_quit(clients, node):
    from chatmesh_testkit import RawWS
    alice = clients("room-quit2")
    alice.join("alice")
    raw = RawWS(node, "room-quit2")
    raw.connect_sio()
    raw.join("rawbob")
    alice.wait_count(2)
    raw.abort()  # no close frame, no 41: the TCP connection just goes away
    assert alice.wait_count(3) == [(M, join_msg("alice")), (M, join_msg("rawbob")),
                                   (M, quit_msg("rawbob"))]


def test_rooms_are_isolated(clients):
    a1 = clients("iso-1")
    a2 = clients("iso-1")
    c = clients("iso-2")
    a1.join("a1")
    c.join("c")
    a2.join("a2")
    a1.say("for room one")
    a1.wait_count(3)
    c.say("for room two")
    assert c.wait_count(2) == [(M, join_msg("c")), (M, say_msg("c", "for room two"))]
    assert a1.wait_count(3) == [(M, join_msg("a1")), (M, join_msg("a2")),
                                (M, say_msg("a1", "for room one"))]
    a2.say("marker")
    assert a2.wait_count(3) == [(M, join_msg("a2")), (M, say_msg("a1", "for room one")),
                                (M, say_msg("a2", "marker"))]
    c.say("marker2")
    assert c.wait_count(3)[2] == (M, say_msg("c", "marker2"))
    assert len(c.snapshot()) == 3


UNICODE_TEXTS = [
    "emoji 😀👍🏽👨‍👩‍👧‍👦 🇫🇷",
    "CJK 中文字符 日本語のテキスト 한국어",
    "RTL שלום עולם مرحبا بالعالم",
    "combining e\u0301 a\u0308 o\u0302\u0323 Z\u0351\u0352\u0353",
    "html <script>alert('x')</script> &amp; \"quotes\" </p>",
    "json-ish {\"a\":[1,2]} \\ backslash \\u0041 \t tab\nnewline",
    "zero-width \u200b\u200d\ufeff and line sep \u2028\u2029",
    "astral 𝄞 𝕏 🀄",
]


def test_unicode_and_html_text_arrive_byte_exact(clients):
    alice = clients("room-unicode")
    bob = clients("room-unicode", transports=["polling"])
    alice.join("alice ☃")
    bob.join("ボブ")
    for t in UNICODE_TEXTS:
        alice.say(t)
    want = [(M, say_msg("alice ☃", t)) for t in UNICODE_TEXTS]
    assert bob.wait_count(1 + len(want))[1:] == want
    assert alice.wait_count(2 + len(want))[2:] == want


def test_unicode_username_of_64_scalars_is_accepted(clients):
    name = "😀" * 64
    alice = clients("room-uname")
    alice.join(name)
    assert alice.wait_count(1) == [(M, join_msg(name))]


def test_say_with_ack_gets_ok_true(clients):
    alice = clients("room-ack")
    assert alice.call("join", {"username": "alice"}) == {"ok": True}
    assert alice.call("say", {"text": "acked"}) == {"ok": True}
    assert alice.wait_count(2) == [(M, join_msg("alice")), (M, say_msg("alice", "acked"))]


def test_say_with_callback_gets_ok_true(clients):
    alice = clients("room-ack2", transports=["polling"])
    alice.join("alice")
    got = []
    done = threading.Event()
    alice.emit("say", {"text": "cb"}, callback=lambda *a: (got.append(a), done.set()))
    assert done.wait(WAIT)
    assert got == [({"ok": True},)]


def test_failed_say_ack_reports_the_error(clients):
    alice = clients("room-ack3")

    def ack_error(event, data):
        ack = alice.call(event, data)
        assert ack["ok"] is False, ack  # {ok:false, error:REASON} (more fields may follow)
        return ack["error"]

    assert ack_error("say", {"text": "too early"}) == "not_joined"
    alice.join("alice")
    assert ack_error("say", {"text": "x" * 4097}) == "text_too_long"
    assert ack_error("join", {"username": "again"}) == "already_joined"


@pytest.mark.chatmesh(limits={"say_rate": 10000, "say_burst": 10000})
def test_another_connection_receives_200_says_complete_and_in_order(clients):
    sender = clients("room-order")
    reader = clients("room-order", transports=["polling"])
    sender.join("sender")
    reader.join("reader")
    sender.wait_count(2)
    texts = [f"msg {i:03d}" for i in range(200)]
    for t in texts:
        sender.say(t)
    want = [(M, say_msg("sender", t)) for t in texts]
    assert reader.wait_count(1 + 200, timeout=20)[1:] == want
    assert sender.wait_count(2 + 200, timeout=20)[2:] == want
