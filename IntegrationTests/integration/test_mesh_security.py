"""The mesh port against strangers: raw sockets to a3's mesh port send garbage, oversized
lengths, PUBs before authentication and a handshake with a wrong secret. Each one must close
that connection, deliver nothing to the room, and leave the node healthy with its peers up.

Also: a whole node started with another secret is refused by its peers, a stranger learns
nothing from the handshake (the dialer proves the secret first; the node answers only a proven
dialer), and a stranger holding every handshake slot cannot keep a restarted peer out (the
oldest pending handshake makes room).

The cluster.conf lists a phantom node `a0` that never runs: it is the name the impostor
claims (a known node smaller than a3, so a3 accepts its dial). A control test does the same
handshake with the right secret and shows that an injected PUB *is* delivered then, so the
refusals below are the node's doing, not the harness's."""

import os
import socket
import struct
import time

import pytest

from mesh_testkit import (HANDSHAKE_TIMEOUT_S, PREAUTH_FRAME_LIMIT, QUIET_S, SNAPSHOT,
                          ImpostorPeer, RawPeer, TLSPeer, assert_refused, frame, guarded_room, hello_frame,
                          mesh_factory, module_mesh, pub_frame, rejects,  # noqa: F401
                          say_packet, says, tls_client_context, unique_room, wait_until)

SECRET = "the-real-mesh-secret"
TARGET = "a3"


@pytest.fixture(scope="module")
def mesh(request):
    return module_mesh(request, ["a1", "a2", "a3"], phantoms=["a0"], secret=SECRET)


@pytest.fixture(scope="module")
def room(mesh):
    return guarded_room(mesh, "guarded", TARGET)


def _pub(room_name, text, seq=1):
    return pub_frame(seq, room_name, say_packet("mallory", text))


def test_garbage_bytes_close_the_link(mesh, room):
    assert_refused(mesh, room, lambda p: p.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" +
                                                os.urandom(64)), "bad_frame")


def test_tls_peer_on_a_plaintext_mesh_is_refused_as_tls_not_enabled(mesh, room):
    """A node configured with `tls = on` dialing this plaintext mesh: its ClientHello is
    recognised and refused with a reason that names the configuration mismatch."""
    made = []

    def connect():
        made.append(TLSPeer(mesh[TARGET], tls_client_context(None, None)))
        return made[0]
    assert_refused(mesh, room, lambda p: None, "tls_not_enabled", peer=connect)
    assert made[0].handshake_error is not None, "a plaintext node must not complete a TLS handshake"


def test_unknown_frame_type_closes_the_link(mesh, room):
    assert_refused(mesh, room, lambda p: p.send(struct.pack(">IB", 9, 0xEE) + os.urandom(8)),
                   "bad_frame")


def test_oversized_length_prefix_closes_the_link_before_buffering(mesh, room):
    assert_refused(mesh, room, lambda p: p.send(b"\xff\xff\xff\xf0" + b"\x06" + b"A" * 1000),
                   "bad_frame")


def test_frame_just_over_the_preauth_limit_closes_the_link(mesh, room):
    r = room[0]
    big = _pub(r, "x" * PREAUTH_FRAME_LIMIT)  # a well-formed PUB, > 4096 bytes
    assert len(big) - 4 > PREAUTH_FRAME_LIMIT
    assert_refused(mesh, room, lambda p: p.send_ignoring_reset(big), "bad_frame")


def test_pub_before_any_handshake_is_refused_and_not_delivered(mesh, room):
    r = room[0]
    assert_refused(mesh, room, lambda p: p.send(_pub(r, "injected before hello")), "auth")


def test_pub_after_hello_before_auth_is_refused_and_not_delivered(mesh, room):
    r = room[0]

    def attack(p):
        p.send(hello_frame("a0", 42, os.urandom(32)))
        p.send(_pub(r, "injected between hello and auth"))
    assert_refused(mesh, room, attack, "auth")


def test_snapshot_before_auth_is_refused(mesh, room):
    r = room[0]

    def attack(p):
        p.send(hello_frame("a0", 43, os.urandom(32)))
        p.send(frame(SNAPSHOT, struct.pack(">I", 1) + struct.pack(">H", len(r)) + r.encode()))
    assert_refused(mesh, room, attack, "auth")


@pytest.mark.parametrize("claim", ["a0", "a1"], ids=["claims_absent_a0", "claims_live_peer_a1"])
def test_wrong_secret_is_refused_and_its_pub_not_delivered(mesh, room, claim):
    r = room[0]
    info = {}
    ups_before = mesh[TARGET].counter("chatmesh_mesh_link_ups_total", peer=claim)

    def attack(imp):
        info.update(imp.handshake(cluster_secret=SECRET))
        imp.send_ignoring_reset(_pub(r, "injected with a wrong secret"))
    goodbye = assert_refused(mesh, room, attack, "auth",
                             peer=ImpostorPeer(mesh[TARGET], claim, "not-the-secret"))
    ups = mesh[TARGET].counter("chatmesh_mesh_link_ups_total", peer=claim)
    print(f"handshake as {claim}: {info}; link_ups{{peer={claim}}} {ups_before} -> {ups}")
    assert ups == ups_before, "the impostor must not replace (or bounce) the real link"
    # The node proved nothing to the stranger: no AUTH of its own, only the refusal.
    assert info["server_auth_sent"] is False, info
    assert any("authentication failed" in g for g in goodbye), goodbye
    assert "authentication failed" in mesh[TARGET].log_text()


def test_control_right_secret_handshake_does_deliver_a_pub(mesh, room):
    """Positive control for the tests above: the same impostor with the right secret."""
    r, w3, _ = room
    imp = ImpostorPeer(mesh[TARGET], "a0", SECRET)
    try:
        info = imp.handshake(cluster_secret=SECRET)
        assert info["server_proof_valid"] is True
        wait_until(lambda: "a0" in mesh[TARGET].peers()[0], what="a0 up on a3")
        imp.send(_pub(r, "from the authenticated impostor"))
        wait_until(lambda: ("mallory", "from the authenticated impostor") in says(w3),
                   what="the authenticated PUB at w3")
        print(f"right secret: link up as a0 ({info}), PUB delivered to w3 on a3")
    finally:
        imp.close()
    wait_until(lambda: "a0" in mesh[TARGET].peers()[1], what="a0 down again")
    assert mesh[TARGET].peers()[0] == ["a1", "a2"]


def test_silent_connection_is_closed_after_the_handshake_timeout(mesh, room):
    node = mesh[TARGET]
    before = rejects(node)
    p = RawPeer(node)
    try:
        took, frames = p.read_until_eof(timeout=HANDSHAKE_TIMEOUT_S + 1.5)
    finally:
        p.close()
    after = rejects(node)
    print(f"idle connection closed after {took:.2f}s; frames {[t for t, _ in frames]}; "
          f"rejects {before} -> {after}")
    assert HANDSHAKE_TIMEOUT_S - 0.5 <= took <= HANDSHAKE_TIMEOUT_S + 1.5
    assert after.get("handshake_timeout", 0) > before.get("handshake_timeout", 0)
    assert node.healthz()["mesh"]["peers_up"] == ["a1", "a2"]


def test_node_with_a_different_secret_is_refused_by_its_peers_and_relays_nothing(mesh, room):
    r, w3, w1 = room
    before = {n: rejects(mesh[n]) for n in ("a1", "a2", "a3")}
    recv_before = {n: mesh[n].counter("chatmesh_mesh_pubs_received_total", peer="a0")
                   for n in ("a1", "a2", "a3")}
    rogue_conf = mesh.write_variant("rogue.conf", secret="some-other-secret")
    rogue = mesh["a0"]
    try:
        rogue.start(conf_path=rogue_conf)
        wait_until(lambda: all(rejects(mesh[n]).get("auth", 0) > before[n].get("auth", 0)
                               for n in ("a1", "a2", "a3")),
                   what="every peer to refuse a0")
        time.sleep(0.5)
        rogue_h = rogue.healthz()["mesh"]
        peers_h = {n: mesh[n].healthz()["mesh"] for n in ("a1", "a2", "a3")}
        seen = {c: len(c.snapshot()) for c in (w3, w1)}
        x = mesh.client("a0", r)
        x.join("rogue-member")
        x.say("via the rogue node")
        wait_until(lambda: ("rogue-member", "via the rogue node") in says(x),
                   what="the rogue member's own echo")
        time.sleep(QUIET_S)
        recv = {n: mesh[n].counter("chatmesh_mesh_pubs_received_total", peer="a0") -
                recv_before[n] for n in ("a1", "a2", "a3")}
        after = {n: rejects(mesh[n]) for n in ("a1", "a2", "a3")}
        logs = {n: mesh[n].log_text().count("authentication failed") for n in ("a1", "a2", "a3")}
        print(f"rogue a0 healthz mesh {rogue_h}; peers' {peers_h}; auth rejects "
              f"{ {n: (before[n].get('auth', 0), after[n].get('auth', 0)) for n in after} }; "
              f"'authentication failed' log lines {logs}; PUBs received from a0 {recv}")
        assert rogue_h["peers_up"] == [] and rogue_h["peers_down"] == ["a1", "a2", "a3"]
        for n, h in peers_h.items():
            assert "a0" in h["peers_down"] and "a0" not in h["peers_up"], (n, h)
            assert sorted(h["peers_up"]) == sorted({"a1", "a2", "a3"} - {n}), (n, h)
        assert all(v >= 1 for v in logs.values()), logs
        assert recv == {"a1": 0, "a2": 0, "a3": 0}
        assert [c.snapshot()[seen[c]:] for c in (w3, w1)] == [[], []]
    finally:
        for c in mesh.clients:
            if c.node is rogue:
                c.disconnect()
        rogue.stop()


def test_stranger_holding_handshake_slots_does_not_keep_a_restarted_peer_out(mesh_factory):
    mesh = mesh_factory(["a1", "a2"], secret=SECRET)
    socks = []

    def hold(n=70):
        while len(socks) < n:
            socks.append(socket.create_connection(("127.0.0.1", mesh["a2"].mesh_port)))

    try:
        hold()
        mesh["a1"].kill9()
        t0 = mesh["a1"].spawn()  # a1 dials a2 again after its restart
        mesh["a1"].wait_healthy()
        renewed = time.monotonic()
        up_after = None
        while time.monotonic() - t0 < 5.0:
            if "a1" in mesh["a2"].peers()[0]:
                up_after = time.monotonic() - t0
                break
            if time.monotonic() - renewed > 3.5:  # before the 5 s handshake timeout
                for s in socks:
                    s.close()
                socks.clear()
                hold()
                renewed = time.monotonic()
            time.sleep(0.1)
        r = {dict(k[1]).get("reason"): v for k, v in mesh["a2"].metrics().samples.items()
             if k[0] == "chatmesh_mesh_link_rejects_total"}
        print(f"70 idle connections held on a2's mesh port: a1-a2 link up after "
              f"{up_after if up_after is None else round(up_after, 2)} s; a2 rejects {r}")
        assert up_after is not None, "the restarted a1 could not link to a2 within 5 s"
    finally:
        for s in socks:
            s.close()
