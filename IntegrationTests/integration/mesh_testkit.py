"""Helpers for the mesh tests: a cluster of `chatmesh serve` processes, raw mesh frames, and
an impostor peer that speaks the mesh handshake from python.

Every node runs on free loopback ports with a temp cluster.conf; every process is stopped by
pid at teardown (a SIGSTOPped one is SIGCONTed first), also when the test fails.

    from mesh_testkit import mesh_factory  # noqa: F401  (the fixture)

    def test_x(mesh_factory):
        mesh = mesh_factory(["a1", "a2", "a3"], limits={"say_rate": 100000})
        alice = mesh.client("a1", "room")
        ...

Reuses `Metrics`, `RecordingClient` and the message builders of chatmesh_testkit.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest
import requests

from chatmesh_testkit import (WAIT, Metrics, RecordingClient, chatmesh_binary,  # noqa: F401
                              free_ports, unique_room, wait_for_healthz, wait_until,
                              join_msg, quit_msg, say_msg)  # noqa: F401 (re-exported)

# Mesh frame types (Sources/MeshFanout/MeshFrame.swift)
HELLO, AUTH, SNAPSHOT, SUB, UNSUB, PUB, ACK, PING, PONG, GOODBYE = range(1, 11)
FRAME_NAMES = {1: "HELLO", 2: "AUTH", 3: "SNAPSHOT", 4: "SUB", 5: "UNSUB", 6: "PUB", 7: "ACK",
               8: "PING", 9: "PONG", 10: "GOODBYE"}
PREAUTH_FRAME_LIMIT = 4096
HANDSHAKE_TIMEOUT_S = 3.0
AUTH_LABEL = b"chatmesh-mesh-auth-v1"

# Generous limits for tests that send many says (the defaults are 20/s, burst 40).
FAST_LIMITS = {"say_rate": 100000, "say_burst": 100000, "outbound_buffer": 16 * 1048576}


# --------------------------------------------------------------------------------------------
# Nodes and clusters


class OrderedClient(RecordingClient):
    """RecordingClient whose events are recorded in the order they came off the wire.

    python-engineio's client runs every "message" handler in a new thread
    (`_trigger_event('message', ..., run_async=True)`), so under load two messages can be
    appended out of order even though the server sent them in order. Order tests need the
    arrival order, so here the handler runs inline on the client's read loop (it only appends
    to a list, so it cannot block that loop)."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        eio = self.sio.eio
        trigger = eio._trigger_event

        def inline(event, *args, **kwargs):
            if event == "message":
                kwargs["run_async"] = False
            return trigger(event, *args, **kwargs)

        eio._trigger_event = inline


class MeshNode:
    """One `chatmesh serve --node NAME` of a cluster (same interface as ChatmeshNode where the
    chatmesh_testkit helpers need it: `http`, `healthz()`, `metrics()`)."""

    def __init__(self, cluster: "MeshCluster", name: str, port: int, mesh_port: int):
        self.cluster = cluster
        self.name = name
        self.port = port
        self.mesh_port = mesh_port
        self.conf_path: Path = cluster.conf_path
        self.proc: subprocess.Popen | None = None
        self.stopped = False          # SIGSTOPped by the test
        self.expect_dead = False      # killed on purpose: no failure at teardown
        self.generation = 0
        self._log = None
        # Where the node listens and how it is started; netns_testkit puts a node in a network
        # namespace by setting these (its own addresses, `ip netns exec NS` before the binary,
        # a snapshot of the binary that a rebuild during the run cannot change).
        self.host = "127.0.0.1"
        self.mesh_host = "127.0.0.1"
        self.command_prefix: list[str] = []
        self.binary: Path | None = None

    @property
    def http(self) -> str:
        return f"http://{self.host}:{self.port}"

    base_url = http  # the browser helpers' name for it

    @property
    def ws(self) -> str:
        return f"ws://{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.cluster.dir / f"{self.name}.{self.generation}.log"

    # -- lifecycle ---------------------------------------------------------------------------
    def spawn(self, conf_path: Path | None = None) -> float:
        """Starts the process without waiting; returns the monotonic time just before."""
        if conf_path is not None:
            self.conf_path = conf_path
        binary = self.binary or chatmesh_binary()
        if not binary.exists():
            raise RuntimeError(f"chatmesh binary not found at {binary} (set CHATMESH_BIN)")
        self.generation += 1
        self._log = open(self.log_path, "wb")
        cmd = [*self.command_prefix, str(binary), "serve", "--config", str(self.conf_path),
               "--node", self.name]
        level = os.environ.get("CHATMESH_LOG_LEVEL")
        if level:
            cmd += ["--log-level", level]
        t = time.monotonic()
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, cwd=self.cluster.dir)
        self.stopped = False
        self.expect_dead = False
        self.cluster._register(self.proc.pid)
        return t

    def wait_healthy(self, timeout: float = 20.0) -> dict:
        """Polls /healthz until 200; returns the body."""
        return wait_for_healthz(self.proc, self.http, f"node {self.name}", self.log_text, timeout)

    def start(self, conf_path: Path | None = None) -> "MeshNode":
        self.spawn(conf_path)
        self.wait_healthy()
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self):
        self.expect_dead = True
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=5)
        self._close_log()

    def sigstop(self):
        os.kill(self.proc.pid, signal.SIGSTOP)
        self.stopped = True

    def sigcont(self):
        os.kill(self.proc.pid, signal.SIGCONT)
        self.stopped = False

    def terminate(self):
        """SIGCONT if stopped, SIGTERM; stop() waits."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            if self.stopped:
                os.kill(self.proc.pid, signal.SIGCONT)
                self.stopped = False
            os.kill(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass

    def stop(self) -> int | None:
        """Stops the process on purpose (SIGTERM, SIGKILL after 5 s); returns its status."""
        if self.proc is None:
            return None
        self.expect_dead = True
        self.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            try:
                os.kill(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=5)
        self._close_log()
        return self.proc.returncode

    def _close_log(self):
        if self._log is not None:
            try:
                self._log.close()
            except Exception:
                pass
            self._log = None

    def log_text(self, limit: int = 12000, all_generations: bool = False) -> str:
        gens = range(1, self.generation + 1) if all_generations else [self.generation]
        text = ""
        for g in gens:
            try:
                text += (self.cluster.dir / f"{self.name}.{g}.log").read_bytes().decode(
                    "utf-8", "replace")
            except OSError:
                pass
        return text if len(text) <= limit else "...(cut)...\n" + text[-limit:]

    # -- observability -----------------------------------------------------------------------
    def healthz(self) -> dict:
        r = requests.get(self.http + "/healthz", timeout=WAIT)
        assert r.status_code == 200, (self.name, r.status_code, r.text)
        return r.json()

    def metrics(self) -> Metrics:
        r = requests.get(self.http + "/metrics", timeout=WAIT)
        assert r.status_code == 200, (self.name, r.status_code, r.text)
        return Metrics.parse(r.text)

    def peers(self) -> tuple[list, list]:
        mesh = self.healthz().get("mesh") or {}
        return sorted(mesh.get("peers_up", [])), sorted(mesh.get("peers_down", []))

    def counter(self, name: str, **labels) -> float:
        """One sample (0 when the series does not exist yet, as for lazily made counters)."""
        m = self.metrics()
        if labels:
            return m.get(name, **labels) or 0.0
        return m.total(name)

    def __repr__(self):
        return f"MeshNode({self.name}, :{self.port}, mesh :{self.mesh_port})"


class MeshCluster:
    """A cluster.conf with `names` (+ `phantoms`: listed, never started) and one MeshNode each."""

    def __init__(self, names, phantoms=(), secret="mesh-test-secret", mesh=None, limits=None,
                 engineio=None, register=None):
        self.names = list(names)
        self.phantoms = list(phantoms)
        self.secret = secret
        self.mesh = dict(mesh or {})
        self.limits = dict(limits or {})
        self.engineio = dict(engineio or {})
        self.dir = Path(tempfile.mkdtemp(prefix="chatmesh-mesh-"))
        self.conf_path = self.dir / "cluster.conf"
        all_names = self.names + self.phantoms
        ports = free_ports(2 * len(all_names))
        self.nodes: dict[str, MeshNode] = {}
        for i, n in enumerate(all_names):
            self.nodes[n] = MeshNode(self, n, ports[2 * i], ports[2 * i + 1])
        self.clients: list[RecordingClient] = []
        self._register_cb = register
        self.conf_path.write_text(self.config_text())

    def _register(self, pid):
        if self._register_cb:
            self._register_cb(pid)

    def __getitem__(self, name) -> MeshNode:
        return self.nodes[name]

    def running(self) -> list[MeshNode]:
        return [n for n in self.nodes.values() if n.alive()]

    def config_text(self, secret: str | None = None) -> str:
        lines = ["# written by IntegrationTests/integration/mesh_testkit.py", "[cluster]", "fanout = mesh",
                 f"secret = {self.secret if secret is None else secret}"]
        for section, kv in (("engineio", self.engineio), ("limits", self.limits),
                            ("mesh", self.mesh)):
            if kv:
                lines += ["", f"[{section}]"] + [f"{k} = {v}" for k, v in kv.items()]
        for n in self.nodes.values():
            lines += ["", f"[node {n.name}]", f"listen = {n.host}:{n.port}",
                      f"mesh = {n.mesh_host}:{n.mesh_port}"]
        return "\n".join(lines) + "\n"

    def write_variant(self, filename: str, **kw) -> Path:
        """The same cluster.conf with other [cluster] values (e.g. secret=...)."""
        p = self.dir / filename
        p.write_text(self.config_text(**kw))
        return p

    def start(self, timeout: float = 20.0) -> "MeshCluster":
        for n in self.names:
            self.nodes[n].spawn()
        for n in self.names:
            self.nodes[n].wait_healthy(timeout)
        self.wait_mesh()
        return self

    def wait_mesh(self, timeout: float = 10.0, names=None) -> float:
        """Waits until every running node (of `names`) has every other one of them in
        peers_up; returns the seconds it took."""
        names = list(names or [n.name for n in self.running() if n.name in self.names])
        t0 = time.monotonic()
        deadline = t0 + timeout
        while True:
            bad = {}
            for n in names:
                up, _ = self.nodes[n].peers()
                want = sorted(x for x in names if x != n)
                if not set(want) <= set(up):
                    bad[n] = up
            if not bad:
                return time.monotonic() - t0
            if time.monotonic() > deadline:
                raise AssertionError(f"mesh not fully up after {timeout}s: {bad}\n" +
                                     "\n".join(f"--- {n} ---\n{self.nodes[n].log_text(3000)}"
                                               for n in names))
            time.sleep(0.05)

    def client(self, node: str, room: str, transports=("websocket",), connect=True,
               ) -> RecordingClient:
        c = OrderedClient(self.nodes[node], room,
                          transports=list(transports) if transports else None)
        self.clients.append(c)
        if connect:
            c.connect()
        return c

    def close_clients(self):
        threads = [threading.Thread(target=c.disconnect, daemon=True) for c in self.clients]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=5)
        self.clients.clear()

    def stop(self) -> dict:
        """Stops every node by pid (SIGCONT first if stopped); returns {name: (rc, died)}."""
        out = {}
        for n in self.nodes.values():
            died = n.proc is not None and n.proc.poll() is not None and not n.expect_dead
            out[n.name] = (None, died)
            n.terminate()
        for n in self.nodes.values():
            out[n.name] = (n.stop(), out[n.name][1])
        return out

    def remove_dir(self):
        """Deletes the temp dir (configs, logs); call only when nothing failed."""
        shutil.rmtree(self.dir, ignore_errors=True)

    def logs(self, limit=6000) -> str:
        return "\n".join(f"--- {n.name} (port {n.port}, mesh {n.mesh_port}) ---\n"
                         f"{n.log_text(limit, all_generations=True)}"
                         for n in self.nodes.values() if n.generation)


@pytest.fixture
def mesh_factory(request):
    """mesh_factory(names, phantoms=(), secret=..., mesh={...}, limits={...}, engineio={...},
    start=True) -> MeshCluster. Clients closed, nodes stopped by pid at teardown."""
    made: list[MeshCluster] = []

    def make(names, start=True, **kw) -> MeshCluster:
        c = MeshCluster(names, **kw)
        made.append(c)
        if start:
            c.start()
        return c

    yield make
    _teardown(request, made)


def _teardown(request, clusters):
    failed = any(getattr(getattr(request.node, "rep_" + w, None), "failed", False)
                 for w in ("setup", "call"))
    died_names = []
    for c in clusters:
        c.close_clients()
        result = c.stop()
        died_names += [n for n, (_, died) in result.items() if died]
        if failed or died_names:
            sys.stderr.write(f"\n=== mesh logs ({c.dir}) ===\n{c.logs()}\n=== end ===\n")
        else:
            c.remove_dir()
    if died_names and not failed:
        pytest.fail(f"node(s) {died_names} died during the test", pytrace=False)


def module_mesh(request, names, **kw) -> MeshCluster:
    """For module-scoped fixtures: a started cluster, stopped by the finalizer."""
    c = MeshCluster(names, **kw)
    failures_before = request.session.testsfailed

    def fin():
        c.close_clients()
        result = c.stop()
        died = [n for n, (_, d) in result.items() if d]
        if died or request.session.testsfailed > failures_before:
            sys.stderr.write(f"\n=== mesh logs ({c.dir}) ===\n{c.logs()}\n=== end ===\n")
        else:
            c.remove_dir()
        assert not died, f"node(s) {died} died during the module"

    request.addfinalizer(fin)
    c.start()
    return c


# --------------------------------------------------------------------------------------------
# Messages


def says(client: RecordingClient, usernames=None) -> list[tuple[str, str]]:
    """(username, text) of every broadcast_say received, in order."""
    out = []
    for e, a in client.snapshot():
        if e == "message" and isinstance(a, dict) and a.get("event") == "broadcast_say":
            d = a.get("data", {})
            if usernames is None or d.get("username") in usernames:
                out.append((d.get("username"), d.get("text")))
    return out


def numbered(client: RecordingClient, sender: str) -> list[int]:
    """The numbers n of the says "<sender>:<n>" received from sender, in arrival order."""
    return [int(t.split(":", 1)[1]) for u, t in says(client, {sender})]


class PacedSender(threading.Thread):
    """Says "<name>:<i>" for i = 0, 1, ... every `interval` s until stop(); `sent` counts."""

    def __init__(self, client: RecordingClient, name: str, interval: float = 0.01):
        super().__init__(daemon=True, name=f"sender-{name}")
        self.client, self.name_, self.interval = client, name, interval
        self.sent = 0
        self.error: BaseException | None = None
        self._halt = threading.Event()

    def run(self):
        try:
            nxt = time.monotonic()
            while not self._halt.is_set():
                self.client.say(f"{self.name_}:{self.sent}")
                self.sent += 1
                nxt += self.interval
                d = nxt - time.monotonic()
                if d > 0:
                    self._halt.wait(d)
        except BaseException as e:  # noqa: BLE001 - reported by stop()
            self.error = e

    def stop(self) -> int:
        self._halt.set()
        self.join(timeout=5)
        assert self.error is None, f"sender {self.name_} failed: {self.error!r}"
        return self.sent


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
    import json
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

    def __init__(self, node: MeshNode, timeout: float = 6.0):
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
        t0 = time.monotonic()
        deadline = t0 + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"mesh connection still open after {timeout}s; "
                                     f"frames: {parse_frames(self.buf)}")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            except (ConnectionResetError, BrokenPipeError):
                break
            if not chunk:
                break
            self.buf += chunk
        return time.monotonic() - t0, parse_frames(self.buf)

    def send_ignoring_reset(self, data: bytes):
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class ImpostorPeer(RawPeer):
    """Plays node `claim` in the mesh handshake with `secret` (right or wrong)."""

    def __init__(self, node: MeshNode, claim: str, secret: str):
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
