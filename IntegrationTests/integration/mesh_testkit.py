"""Helpers for the mesh tests: a cluster of `chatmesh serve` processes, raw mesh frames, and
an impostor peer that speaks the mesh handshake from python.

Every node runs on free loopback ports with a temp cluster.conf; every process is stopped by
pid at teardown (a SIGSTOPped one is SIGCONTed first), also when the test fails.

    from mesh_testkit import mesh_factory  # noqa: F401  (the fixture)

    def test_x(mesh_factory):
        mesh = mesh_factory(["a1", "a2", "a3"], limits={"say_rate": 100000})
        alice = mesh.client("a1", "room")
        ...

MeshCluster is the harness Cluster in mesh mode (IntegrationTests/harness); `PacedSender`,
`says` and `numbered` come from harness.clients and are re-exported here.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import socket
import ssl
import struct
import subprocess
import time
from pathlib import Path

import pytest

from chatmesh_testkit import (WAIT, Metrics, RecordingClient, chatmesh_binary,  # noqa: F401
                              free_ports, recv_until_closed, unique_room, wait_for_healthz,
                              wait_until,
                              join_msg, quit_msg, say_msg)  # noqa: F401 (re-exported)
from harness.clients import OrderedClient, PacedSender, numbered, says  # noqa: F401
from harness.cluster import FAST_LIMITS, Cluster, factory, teardown  # noqa: F401
from harness.node import NodeProcess
from harness.process import close_quietly

# Mesh frame types (Sources/MeshFanout/MeshFrame.swift)
HELLO, AUTH, SNAPSHOT, SUB, UNSUB, PUB, ACK, PING, PONG, GOODBYE = range(1, 11)
FRAME_NAMES = {1: "HELLO", 2: "AUTH", 3: "SNAPSHOT", 4: "SUB", 5: "UNSUB", 6: "PUB", 7: "ACK",
               8: "PING", 9: "PONG", 10: "GOODBYE"}
PREAUTH_FRAME_LIMIT = 4096
HANDSHAKE_TIMEOUT_S = 3.0
AUTH_LABEL = b"chatmesh-mesh-auth-v1"


# --------------------------------------------------------------------------------------------
# Nodes and clusters (harness.cluster)

MeshNode = NodeProcess


class MeshCluster(Cluster):
    """A mesh-mode Cluster of `names` (+ `phantoms`: listed, never started); `cluster` takes
    extra [cluster] keys (e.g. drain_timeout)."""

    def __init__(self, names, **kw):
        super().__init__("mesh", nodes=names, prefix="chatmesh-mesh-", **kw)


@pytest.fixture
def mesh_factory(request):
    """mesh_factory(names, phantoms=(), secret=..., mesh={...}, limits={...}, engineio={...},
    start=True) -> MeshCluster. Clients closed, nodes stopped by pid at teardown, logs printed
    when the test failed or a node died."""
    return factory(request, MeshCluster)


def module_mesh(request, names, **kw) -> MeshCluster:
    """For module-scoped fixtures: a started cluster, stopped when the module ends."""
    return teardown(request).add(MeshCluster(names, **kw)).start()


# --------------------------------------------------------------------------------------------
# Raw mesh wire


def frame(ftype: int, body: bytes = b"") -> bytes:
    return struct.pack(">IB", 1 + len(body), ftype) + body


def mstr(s: str | bytes) -> bytes:
    b = s.encode() if isinstance(s, str) else s
    return struct.pack(">H", len(b)) + b


def hello_frame(node: str, epoch: int, nonce: bytes, version: int = 1) -> bytes:
    return frame(HELLO, bytes([version]) + mstr(node) + struct.pack(">Q", epoch) + nonce)


def auth_frame(proof_bytes: bytes, resume_epoch: int = 0, resume_seq: int = 0) -> bytes:
    return frame(AUTH, proof_bytes + struct.pack(">QQ", resume_epoch, resume_seq))


def pub_frame(seq: int, room: str, payload: bytes) -> bytes:
    return frame(PUB, struct.pack(">Q", seq) + mstr(room) + payload)


def say_packet(username: str, text: str) -> bytes:
    """A PUB payload: the Socket.IO packet 2["message",{...}] as encoded at an origin node."""
    return ("2" + json.dumps(["message", {"event": "broadcast_say",
                                          "data": {"username": username, "text": text}}],
                             separators=(",", ":"))).encode()


def proof(secret: str, sender: str, receiver: str, sender_nonce: bytes, receiver_nonce: bytes,
          sender_epoch: int, resume_epoch: int, resume_seq: int) -> bytes:
    """MeshHandshake.proof(...) in python."""
    msg = AUTH_LABEL + mstr(sender) + mstr(receiver) + sender_nonce + receiver_nonce
    msg += struct.pack(">QQQ", sender_epoch, resume_epoch, resume_seq)
    return hmac.new(secret.encode(), msg, hashlib.sha256).digest()


def parse_frames(data: bytes) -> list[tuple[str, bytes]]:
    """Splits received bytes into (type name, body); a trailing partial frame is ignored."""
    out, i = [], 0
    while i + 5 <= len(data):
        (n,) = struct.unpack(">I", data[i:i + 4])
        if n < 1 or i + 4 + n > len(data):
            break
        t = data[i + 4]
        out.append((FRAME_NAMES.get(t, str(t)), data[i + 5:i + 4 + n]))
        i += 4 + n
    return out


def parse_hello(body: bytes) -> dict:
    version = body[0]
    (ln,) = struct.unpack(">H", body[1:3])
    name = body[3:3 + ln].decode()
    (epoch,) = struct.unpack(">Q", body[3 + ln:11 + ln])
    nonce = body[11 + ln:43 + ln]
    assert len(nonce) == 32 and len(body) == 43 + ln, body
    return {"version": version, "node": name, "epoch": epoch, "nonce": nonce}


def parse_goodbye(body: bytes) -> str:
    (ln,) = struct.unpack(">H", body[:2])
    return body[2:2 + ln].decode("utf-8", "replace")


class RawPeer:
    """A TCP connection to a node's mesh port, driven by hand."""

    def __init__(self, node: NodeProcess, timeout: float = 6.0):
        self.node = node
        self.sock = socket.create_connection(("127.0.0.1", node.mesh_port), timeout=timeout)
        self.buf = b""

    def send(self, data: bytes):
        self.sock.sendall(data)

    def read_frame(self, timeout: float = WAIT) -> tuple[str, bytes]:
        deadline = time.monotonic() + timeout
        while True:
            fr = parse_frames(self.buf)
            if fr:
                name, body = fr[0]
                self.buf = self.buf[5 + len(body):]
                return name, body
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no complete frame within {timeout}s (have {self.buf[:64]!r})")
            self.sock.settimeout(left)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"EOF while waiting for a frame (have {self.buf!r})")
            self.buf += chunk

    def read_until_eof(self, timeout: float = 6.0) -> tuple[float, list[tuple[str, bytes]]]:
        """Reads until the node closes the connection; returns (seconds taken, frames read
        since connect that were not consumed yet). Asserts EOF comes within timeout."""
        def keep(chunk: bytes) -> None:
            self.buf += chunk

        t0 = time.monotonic()
        recv_until_closed(self.sock, timeout, keep,
                          lambda: f"mesh connection still open after {timeout}s; "
                                  f"frames: {parse_frames(self.buf)}")
        return time.monotonic() - t0, parse_frames(self.buf)

    def send_ignoring_reset(self, data: bytes):
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def close(self):
        close_quietly(self.sock)


class ImpostorPeer(RawPeer):
    """Plays node `claim` in the mesh handshake with `secret` (right or wrong)."""

    def __init__(self, node: NodeProcess, claim: str, secret: str):
        super().__init__(node)
        self.claim, self.secret = claim, secret
        self.epoch = int.from_bytes(os.urandom(8), "big") | 1
        self.nonce = os.urandom(32)
        self.server_hello: dict | None = None
        self.server_auth: bytes | None = None

    def handshake(self, cluster_secret: str | None = None) -> dict:
        """HELLO both ways, then our AUTH (the dialer proves first), then the node's AUTH if
        ours verified. Returns what was seen: whether the node sent an AUTH at all
        (`server_auth_sent`), and if so whether it verifies with `cluster_secret` (the real one)."""
        name, body = self.read_frame()
        assert name == "HELLO", (name, body)
        self.server_hello = parse_hello(body)
        self.send(hello_frame(self.claim, self.epoch, self.nonce))
        mine = proof(self.secret, self.claim, self.server_hello["node"], self.nonce,
                     self.server_hello["nonce"], self.epoch, 0, 0)
        self.send(auth_frame(mine, 0, 0))
        info = {"server": self.server_hello["node"]}
        try:
            name, body = self.read_frame()
        except (AssertionError, OSError, EOFError):
            name, body = None, b""
        info["server_auth_sent"] = name == "AUTH"
        if name != "AUTH":
            info["instead"] = name
            if name is not None:   # leave the refusal (GOODBYE) for the caller to read
                code = next(t for t, n in FRAME_NAMES.items() if n == name)
                self.buf = frame(code, body) + self.buf
            return info
        self.server_auth = body
        srv_proof = body[:32]
        r_epoch, r_seq = struct.unpack(">QQ", body[32:48])
        info["resume"] = (r_epoch, r_seq)
        if cluster_secret is not None:
            want = proof(cluster_secret, self.server_hello["node"], self.claim,
                         self.server_hello["nonce"], self.nonce, self.server_hello["epoch"],
                         r_epoch, r_seq)
            info["server_proof_valid"] = hmac.compare_digest(want, srv_proof)
        return info


# --------------------------------------------------------------------------------------------
# Mesh TLS: certificates made with the openssl CLI, and a peer that speaks TLS


class CertMaker:
    """CAs and node certificates in `dir`, made with the openssl CLI (ECDSA P-256, like
    gen-certs): `ca(name)` a CA, `cert(name, ca, san)` a certificate signed by it for DNS name
    `san`, `expired=True` one whose validity ended yesterday. Paths are returned as strings."""

    def __init__(self, dir: Path):
        self.dir = Path(dir)
        self.dir.mkdir(parents=True, exist_ok=True)

    def _openssl(self, *args: str) -> None:
        out = subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, f"openssl {' '.join(args)}: {out.stderr}"

    def _key(self, name: str) -> str:
        key = str(self.dir / f"{name}-key.pem")
        self._openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key)
        os.chmod(key, 0o600)
        return key

    def ca(self, name: str) -> tuple[str, str]:
        key = self._key(name)
        cert = str(self.dir / f"{name}.pem")
        self._openssl("req", "-x509", "-new", "-key", key, "-subj", f"/CN={name}", "-days", "3650",
                      "-addext", "basicConstraints=critical,CA:TRUE",
                      "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-out", cert)
        return cert, key

    def cert(self, name: str, ca: tuple[str, str], san: str,
             expired: bool = False) -> tuple[str, str]:
        key = self._key(name)
        csr, ext, cert = (str(self.dir / f"{name}.{x}") for x in ("csr", "ext", "pem"))
        self._openssl("req", "-new", "-key", key, "-subj", f"/CN={san}", "-out", csr)
        Path(ext).write_text(f"subjectAltName=DNS:{san},IP:127.0.0.1\n"
                             "extendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=CA:FALSE\n")
        # -days -1: valid from now until yesterday, i.e. expired.
        self._openssl("x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1], "-CAcreateserial",
                      "-days", "-1" if expired else "365", "-extfile", ext, "-out", cert)
        return cert, key


def tls_client_context(ca: str | None, cert: tuple[str, str] | None) -> ssl.SSLContext:
    """A TLS 1.3 client context as a mesh dialer has one: trusts `ca` (or nothing), presents
    `cert` (or no certificate), no hostname check."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False
    if ca:
        ctx.load_verify_locations(ca)
    else:
        ctx.verify_mode = ssl.CERT_NONE
    if cert:
        ctx.load_cert_chain(cert[0], cert[1])
    return ctx


class TLSPeer(RawPeer):
    """A mesh connection over TLS (`ctx` from tls_client_context). The TLS handshake runs in
    the constructor; in TLS 1.3 the client finishes before the node has judged its certificate,
    so a refusal of the certificate shows up as an alert or EOF on the first read.
    `handshake_error` holds a failure of the handshake itself."""

    def __init__(self, node: NodeProcess, ctx: ssl.SSLContext, timeout: float = 6.0):
        super().__init__(node, timeout)
        self.raw = self.sock
        self.handshake_error: Exception | None = None
        self.sock = ctx.wrap_socket(self.raw, do_handshake_on_connect=False)
        try:
            self.sock.do_handshake()
        except (ssl.SSLError, OSError) as e:
            self.handshake_error = e

    def read_until_eof(self, timeout: float = 6.0) -> tuple[float, list[tuple[str, bytes]]]:
        """As RawPeer's, and a TLS alert (the node refusing our certificate) counts as EOF."""
        t0 = time.monotonic()
        deadline = t0 + timeout
        while True:
            left = deadline - time.monotonic()
            assert left > 0, (f"mesh TLS connection still open after {timeout}s; "
                              f"frames: {parse_frames(self.buf)}")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            except (ssl.SSLError, OSError):
                break
            if not chunk:
                break
            self.buf += chunk
        return time.monotonic() - t0, parse_frames(self.buf)

    def send_ignoring_reset(self, data: bytes):
        try:
            self.sock.sendall(data)
        except (ssl.SSLError, OSError):
            pass


class TLSImpostorPeer(ImpostorPeer):
    """ImpostorPeer over TLS: plays node `claim` with `secret`, presenting what `ctx` holds."""

    def __init__(self, node: NodeProcess, claim: str, secret: str, ctx: ssl.SSLContext):
        super().__init__(node, claim, secret)
        self.sock = ctx.wrap_socket(self.sock)

    read_until_eof = TLSPeer.read_until_eof
    send_ignoring_reset = TLSPeer.send_ignoring_reset


# --------------------------------------------------------------------------------------------
# Refusals on the mesh port

QUIET_S = 0.5  # how long a watcher must stay silent after an attack


def rejects(node) -> dict:
    """chatmesh_mesh_link_rejects_total by reason."""
    m = node.metrics()
    return {dict(k[1]).get("reason"): v for k, v in m.samples.items()
            if k[0] == "chatmesh_mesh_link_rejects_total"}


def guarded_room(mesh, prefix: str, target="a3"):
    """A room with a member on `target` (and one on a1), to catch any delivery an attack on
    `target` causes: (room, target's member, a1's member)."""
    r = unique_room(prefix)
    w3 = mesh.client(target, r)
    w1 = mesh.client("a1", r)
    w3.join("w3")
    w1.join("w1")
    time.sleep(0.3)
    return r, w3, w1


def assert_refused(mesh, room, attack, expect_reason, peer=None, target="a3"):
    """Runs attack(peer) on a fresh connection to `target`'s mesh port (`peer`: a RawPeer, a
    callable making one after the counters are read, or None for a plain RawPeer), then
    checks: closed within 6 s, nothing delivered to the room's watchers, the node healthy with
    its peers up, the reject counted under `expect_reason` and logged with it
    (`reject=<reason>`), and a normal say still crossing nodes. Returns the GOODBYE texts read."""
    r, w3, w1 = room
    node = mesh[target]
    before = rejects(node)
    logged_before = node.log_text(10 ** 7).count(f"reject={expect_reason}")
    seen = {c: len(c.snapshot()) for c in (w3, w1)}
    peer = peer() if callable(peer) else peer or RawPeer(node)
    try:
        attack(peer)
        took, frames = peer.read_until_eof(timeout=6.0)
    finally:
        peer.close()
    time.sleep(QUIET_S)
    after = rejects(node)
    logged = node.log_text(10 ** 7).count(f"reject={expect_reason}") - logged_before
    goodbye = [parse_goodbye(b) for t, b in frames if t == "GOODBYE"]
    print(f"closed after {took * 1000:.0f} ms; node sent {[t for t, _ in frames]}; "
          f"goodbye {goodbye}; rejects {before} -> {after}; "
          f"reject={expect_reason} logged {logged}x")
    assert [c.snapshot()[seen[c]:] for c in (w3, w1)] == [[], []], "something was delivered"
    h = node.healthz()
    others = sorted(n for n in mesh.names if n != target)
    assert h["status"] == "ok" and h["mesh"]["peers_up"] == others, h
    assert after.get(expect_reason, 0) > before.get(expect_reason, 0), (before, after)
    assert logged >= 1, node.log_text(3000)
    # Still serving the room across nodes after the attack.
    marker = f"still fine {time.monotonic()}"
    w1.say(marker)
    wait_until(lambda: all(marker in [t for _, t in says(c)] for c in (w3, w1)),
               what="a normal say after the attack, at w3 and back at w1")
    return goodbye
