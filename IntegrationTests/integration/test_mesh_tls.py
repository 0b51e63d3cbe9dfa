"""Mesh links over TLS (`[mesh] tls = on`, certificates from `chatmesh gen-certs`).

What crosses the mesh port is encrypted: a packet capture of the mesh ports during a say holds
the say's text with `tls = off` and does not with `tls = on`.

Every bad input on a TLS mesh port is refused with its reason logged (`reject=<reason>`) and
counted in chatmesh_mesh_link_rejects_total{reason}, nothing is delivered, and the node stays
healthy with its peers up: a plaintext peer (tls_required), no client certificate, a
certificate from another CA, an expired one, garbage (tls_handshake_failed), a valid
certificate naming another node than the one claimed in HELLO (tls_peer_name_mismatch) and a
stalled TLS handshake (handshake_timeout). (A TLS peer on a plaintext mesh is refused in
test_mesh_security.py, whose mesh is plaintext.) Stalled TLS handshakes count against the
pending-handshake cap, so 70 of them do not keep a restarted peer out.

The cluster.conf lists a phantom node `a0` that never runs: gen-certs makes its certificate,
and the impostor plays it. A control test with a0's real certificate and the right secret
shows that an injected PUB *is* delivered then, so the refusals are the node's doing."""

import os
import signal
import subprocess
import time

import pytest

from mesh_testkit import (HANDSHAKE_TIMEOUT_S, MeshCluster, RawPeer, CertMaker, TLSImpostorPeer,
                          TLSPeer, assert_refused, guarded_room, hello_frame, module_mesh,  # noqa: F401
                          pub_frame, rejects, say_packet, says,
                          tls_client_context, unique_room, wait_until)
from harness.cluster import teardown

SECRET = "the-real-mesh-secret-of-the-tls-tests"
TARGET = "a3"


@pytest.fixture(scope="module")
def mesh(request):
    return module_mesh(request, ["a1", "a2", "a3"], phantoms=["a0"], secret=SECRET, tls=True)


@pytest.fixture(scope="module")
def room(mesh):
    return guarded_room(mesh, "guarded-tls", TARGET)


@pytest.fixture(scope="module")
def pki(mesh):
    """The cluster's CA (from gen-certs) and certificates crafted for the attacks."""
    ca = (str(mesh.tls_dir / "ca.pem"), str(mesh.tls_dir / "ca-key.pem"))
    made = CertMaker(mesh.dir / "crafted")
    other_ca = made.ca("other-ca")
    return {
        "ca": ca[0],
        "a0": (str(mesh.tls_dir / "a0.pem"), str(mesh.tls_dir / "a0-key.pem")),
        "a1": (str(mesh.tls_dir / "a1.pem"), str(mesh.tls_dir / "a1-key.pem")),
        "other_ca": made.cert("a0-other-ca", other_ca, "a0"),
        "expired": made.cert("a0-expired", ca, "a0", expired=True),
    }


def tls_peer(mesh, ctx):
    """Connects (and runs the TLS handshake) only when assert_refused asks for the peer."""
    return lambda: TLSPeer(mesh[TARGET], ctx)


def test_plaintext_peer_on_a_tls_mesh_is_refused_as_tls_required(mesh, room):
    goodbye = assert_refused(mesh, room, lambda p: p.send(hello_frame("a0", 41, os.urandom(32))),
                             "tls_required")
    # Told in plaintext, so a node left on `tls = off` logs why its dial failed.
    assert any("requires TLS" in g for g in goodbye), goodbye


def send_hello_as_a0(peer):
    """What a dialer sends once its TLS handshake is done (if the node still listens)."""
    peer.send_ignoring_reset(hello_frame("a0", 42, os.urandom(32)))


def test_peer_without_a_client_certificate_is_refused(mesh, room, pki):
    assert_refused(mesh, room, send_hello_as_a0, "tls_handshake_failed",
                   peer=tls_peer(mesh, tls_client_context(pki["ca"], None)))
    assert "PEER_DID_NOT_RETURN_A_CERTIFICATE" in mesh[TARGET].log_text(10 ** 6)


def test_certificate_from_another_ca_is_refused(mesh, room, pki):
    assert_refused(mesh, room, send_hello_as_a0, "tls_handshake_failed",
                   peer=tls_peer(mesh, tls_client_context(pki["ca"], pki["other_ca"])))
    assert "CERTIFICATE_VERIFY_FAILED" in mesh[TARGET].log_text(10 ** 6)


def test_expired_certificate_is_refused(mesh, room, pki):
    assert_refused(mesh, room, send_hello_as_a0, "tls_handshake_failed",
                   peer=tls_peer(mesh, tls_client_context(pki["ca"], pki["expired"])))
    assert "CERTIFICATE_VERIFY_FAILED" in mesh[TARGET].log_text(10 ** 6)


def test_garbage_on_the_tls_port_is_refused(mesh, room):
    garbage = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + os.urandom(64)
    assert_refused(mesh, room, lambda p: p.send(garbage), "tls_handshake_failed")


def test_valid_certificate_naming_another_node_is_refused(mesh, room, pki):
    """a1's own certificate (cluster CA, valid) used to claim a0 in HELLO, with the right
    secret: the name check alone refuses it, before any AUTH."""
    r = room[0]
    info = {}

    def attack(imp):
        info.update(imp.handshake(cluster_secret=SECRET))
        imp.send_ignoring_reset(pub_frame(1, r, say_packet("mallory", "injected under a1's name")))
    goodbye = assert_refused(
        mesh, room, attack, "tls_peer_name_mismatch",
        peer=lambda: TLSImpostorPeer(mesh[TARGET], "a0", SECRET,
                                     tls_client_context(pki["ca"], pki["a1"])))
    print(f"handshake: {info}")
    assert info["server_auth_sent"] is False, info
    assert any("names 'a1', not node 'a0'" in g for g in goodbye), goodbye


def test_stalled_tls_handshake_is_cut_at_the_handshake_deadline(mesh, room):
    """Half a ClientHello, then silence: the 3 s mesh handshake deadline covers TLS."""
    node = mesh[TARGET]
    before = rejects(node)
    p = RawPeer(node)
    try:
        p.send(bytes([0x16, 0x03, 0x01, 0x02, 0x00]) + os.urandom(40))
        took, _ = p.read_until_eof(timeout=HANDSHAKE_TIMEOUT_S + 1.5)
    finally:
        p.close()
    after = rejects(node)
    print(f"stalled TLS handshake closed after {took:.2f}s; rejects {before} -> {after}")
    assert HANDSHAKE_TIMEOUT_S - 0.5 <= took <= HANDSHAKE_TIMEOUT_S + 1.5
    assert after.get("handshake_timeout", 0) > before.get("handshake_timeout", 0)
    assert "reject=handshake_timeout" in node.log_text(10 ** 6)
    assert node.healthz()["mesh"]["peers_up"] == ["a1", "a2"]


def test_control_real_certificate_and_secret_do_deliver_a_pub(mesh, room, pki):
    """Positive control: a0's own certificate, the right secret: the link comes up and the
    PUB is delivered, so the refusals above come from the checks, not from the harness."""
    r, w3, _ = room
    imp = TLSImpostorPeer(mesh[TARGET], "a0", SECRET, tls_client_context(pki["ca"], pki["a0"]))
    try:
        info = imp.handshake(cluster_secret=SECRET)
        assert info["server_proof_valid"] is True, info
        wait_until(lambda: "a0" in mesh[TARGET].peers()[0], what="a0 up on a3")
        imp.send(pub_frame(1, r, say_packet("mallory", "from the certified impostor")))
        wait_until(lambda: ("mallory", "from the certified impostor") in says(w3),
                   what="the authenticated PUB at w3")
    finally:
        imp.close()
    wait_until(lambda: "a0" in mesh[TARGET].peers()[1], what="a0 down again")


def test_stalled_tls_handshakes_holding_every_slot_do_not_keep_a_restarted_peer_out(request):
    """70 connections each stalled inside the TLS handshake (more than the 64 pending
    handshakes a node keeps): the oldest make room, so a restarted a1 links to a2 at once,
    well before the 3 s deadline would free any of them."""
    mesh = teardown(request).add(MeshCluster(["a1", "a2"], secret=SECRET, tls=True)).start()
    before = rejects(mesh["a2"])
    held = []
    t_held = time.monotonic()
    try:
        for _ in range(70):
            p = RawPeer(mesh["a2"])
            p.send(bytes([0x16, 0x03, 0x01, 0x02, 0x00]) + os.urandom(40))
            held.append(p)
        mesh["a1"].kill9()
        t0 = mesh["a1"].spawn()
        mesh["a1"].wait_healthy()
        # Before the first held handshake could time out and free its slot.
        left = t_held + HANDSHAKE_TIMEOUT_S - 0.2 - time.monotonic()
        wait_until(lambda: "a1" in mesh["a2"].peers()[0], timeout=max(left, 0.1),
                   what="the restarted a1 up on a2 while the stalled handshakes are held")
        took = time.monotonic() - t0
    finally:
        for p in held:
            p.close()
    after = rejects(mesh["a2"])
    print(f"a1 relinked {took:.2f}s after its restart; a2 rejects {before} -> {after}")
    assert after.get("too_many_handshakes", 0) - before.get("too_many_handshakes", 0) >= 6


# --------------------------------------------------------------------------------------------
# What a packet capture of the mesh ports shows


class Capture:
    """tcpdump on lo of the given TCP ports, written to a pcap file."""

    def __init__(self, path, ports):
        self.path = path
        expr = " or ".join(f"tcp port {p}" for p in ports)
        # --immediate-mode: each packet is written as it comes, not when a capture block fills.
        self.proc = subprocess.Popen(["tcpdump", "-i", "lo", "--immediate-mode", "-U", "-s", "0",
                                      "-w", str(path), expr],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        line = self.proc.stderr.readline()  # "listening on lo, ..." once capturing
        assert "listening" in line, f"tcpdump did not start: {line}"

    def stop(self) -> bytes:
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout=10)
        return self.path.read_bytes()


@pytest.mark.parametrize("tls", [True, False], ids=["tls_on", "tls_off"])
def test_a_say_crosses_the_mesh_encrypted_only_with_tls_on(request, tls):
    mesh = teardown(request).add(MeshCluster(["a1", "a2"], secret=SECRET, tls=tls)).start()
    r = unique_room("captured")
    c1, c2 = mesh.client("a1", r), mesh.client("a2", r)
    c1.join("c1")
    c2.join("c2")
    time.sleep(0.3)
    marker = f"capture-marker-{os.urandom(8).hex()}"
    capture = Capture(mesh.dir / "mesh.pcap", [mesh[n].mesh_port for n in mesh.names])
    try:
        c1.say(marker)
        wait_until(lambda: ("c1", marker) in says(c2), what="the say at c2 (across the mesh)")
        time.sleep(0.2)
    finally:
        pcap = capture.stop()
    print(f"tls={'on' if tls else 'off'}: {len(pcap)} bytes captured on the mesh ports; "
          f"marker in capture: {marker.encode() in pcap}")
    assert len(pcap) > 200, "the capture saw no mesh traffic"
    if tls:
        assert marker.encode() not in pcap
        assert b"\x17\x03\x03" in pcap, "no TLS application data record in the capture"
    else:
        assert marker.encode() in pcap
