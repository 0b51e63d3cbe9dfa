"""Helpers for the chatmesh integration tests: a node under test, recording clients, raw wire.

Everything here talks to one chatmesh node on loopback. Waits are short (5 s by default) so
that a broken server fails a test quickly instead of hanging the suite.
"""

from __future__ import annotations

import base64
import errno
import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
import urllib.parse
from pathlib import Path

import engineio.payload
import requests
import socketio
import websocket

# python-engineio's client drops the connection ("Unexpected packet from server, aborting") when
# one long-polling response carries more than 16 packets; chatmesh sends at most 16 per
# response for that reason. The stock limit stays in force here, so the tests prove it.

REPO = Path(__file__).resolve().parents[2]
WAIT = 5.0  # seconds: the default for every wait in the suite
RS = "\x1e"  # Engine.IO v4 payload separator (polling)

DEFAULT_ENGINEIO: dict[str, object] = {}
DEFAULT_LIMITS: dict[str, object] = {}


# Measured figures (and plain skip reasons) that must show in `make test` output, which runs
# pytest -q and so hides print(): tests call record_figure(); conftest's
# pytest_terminal_summary prints them all in one "measured figures" section at the end.
FIGURES: list[tuple[str, str]] = []


def record_figure(where: str, text: str) -> None:
    """Prints `text` now (seen with -s) and keeps it for the end-of-run summary."""
    print(f"{where}: {text}")
    FIGURES.append((where, text))


def chatmesh_binary() -> Path:
    env = os.environ.get("CHATMESH_BIN")
    return Path(env) if env else REPO / ".build" / "debug" / "chatmesh"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_healthz(proc, base_url: str, what: str, log_text, timeout: float = 20.0,
                     interval: float = 0.02) -> dict:
    """Polls `base_url`/healthz until it answers 200 and returns the body; fails at once (with
    `log_text()`) if `proc` exits meanwhile, and after `timeout` with the last answer seen."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} during start\n{log_text()}")
        try:
            r = requests.get(base_url + "/healthz", timeout=1)
            if r.status_code == 200:
                return r.json()
            last = f"HTTP {r.status_code}: {r.text[:200]}"
        except requests.RequestException as e:
            last = repr(e)
        time.sleep(interval)
    raise RuntimeError(f"{what}: /healthz not 200 within {timeout}s (last: {last})\n{log_text()}")


def free_ports(n: int) -> list[int]:
    """n distinct free loopback ports (all bound at once, so they differ)."""
    socks, ports = [], []
    try:
        while len(ports) < n:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def unique_room(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def wait_until(pred, timeout: float = WAIT, interval: float = 0.02, what: str = "condition"):
    """Polls pred() (no locks held meanwhile) until it returns a truthy value; returns it
    (asserts on timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


# --------------------------------------------------------------------------------------------
# The node under test


class ChatmeshNode:
    """One `chatmesh serve` process on a free loopback port, with a temp cluster.conf."""

    def __init__(self, engineio: dict | None = None, limits: dict | None = None,
                 cluster: dict | None = None, node_name: str = "a1"):
        self.engineio = {**DEFAULT_ENGINEIO, **(engineio or {})}
        self.limits = {**DEFAULT_LIMITS, **(limits or {})}
        self.cluster = dict(cluster or {})
        self.name = node_name
        self.port, self.mesh_port = free_ports(2)  # bound at once, so they differ
        self.dir = Path(tempfile.mkdtemp(prefix="chatmesh-it-"))
        self.conf_path = self.dir / "cluster.conf"
        self.stderr_path = self.dir / "stderr.log"
        self.proc: subprocess.Popen | None = None

    # -- config ------------------------------------------------------------------------------
    def config_text(self) -> str:
        lines = ["# written by IntegrationTests/integration", "[cluster]", "fanout = mesh"]
        lines += [f"{k} = {v}" for k, v in self.cluster.items()]
        if self.engineio:
            lines += ["", "[engineio]"] + [f"{k} = {v}" for k, v in self.engineio.items()]
        if self.limits:
            lines += ["", "[limits]"] + [f"{k} = {v}" for k, v in self.limits.items()]
        lines += ["", f"[node {self.name}]",
                  f"listen = 127.0.0.1:{self.port}",
                  f"mesh = 127.0.0.1:{self.mesh_port}", ""]
        return "\n".join(lines)

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self, timeout: float = 20.0) -> "ChatmeshNode":
        binary = chatmesh_binary()
        if not binary.exists():
            raise RuntimeError(f"chatmesh binary not found at {binary} "
                               f"(run `swift build` or set CHATMESH_BIN)")
        self.conf_path.write_text(self.config_text())
        cmd = [str(binary), "serve", "--config", str(self.conf_path), "--node", self.name]
        level = os.environ.get("CHATMESH_LOG_LEVEL")
        if level:
            cmd += ["--log-level", level]
        self._stderr = open(self.stderr_path, "wb")
        for attempt in range(100):
            try:
                self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self._stderr,
                                             stderr=self._stderr, cwd=self.dir)
                break
            except OSError as e:  # ETXTBSY: the binary is being rewritten by a build right now
                if e.errno != errno.ETXTBSY or attempt == 99:
                    raise
                time.sleep(0.1)
        try:
            wait_for_healthz(self.proc, self.http, "chatmesh", timeout=timeout, interval=0.05,
                             log_text=lambda: f"--- config ---\n{self.config_text()}\n"
                                              f"--- stderr ---\n{self.stderr_text()}")
        except RuntimeError:
            self.stop()
            raise
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> int | None:
        """SIGTERM, SIGKILL after 5 s; always by pid. Returns the exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                try:
                    os.kill(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(timeout=5)
        try:
            self._stderr.close()
        except Exception:
            pass
        return self.proc.returncode

    def stderr_text(self, limit: int = 20000) -> str:
        try:
            data = self.stderr_path.read_bytes()
        except OSError:
            return ""
        text = data.decode("utf-8", "replace")
        return text if len(text) <= limit else "...(cut)...\n" + text[-limit:]

    # -- observability -----------------------------------------------------------------------
    def healthz(self) -> dict:
        r = requests.get(self.http + "/healthz", timeout=WAIT)
        assert r.status_code == 200, (r.status_code, r.text)
        body = r.json()
        assert body.get("status") == "ok", body
        return body

    def metrics(self) -> "Metrics":
        r = requests.get(self.http + "/metrics", timeout=WAIT)
        assert r.status_code == 200, (r.status_code, r.text)
        return Metrics.parse(r.text)

    def assert_healthy(self) -> dict:
        assert self.alive(), "chatmesh process died:\n" + self.stderr_text()
        return self.healthz()

    def wait_health(self, pred, timeout: float = 10.0) -> dict:
        """Poll /healthz until pred(body) holds; returns the body (asserts on timeout)."""
        deadline = time.monotonic() + timeout
        body = self.healthz()
        while not pred(body):
            if time.monotonic() > deadline:
                raise AssertionError(f"/healthz never satisfied the condition: {body}")
            time.sleep(0.05)
            body = self.healthz()
        return body


class Metrics:
    """Prometheus text exposition, parsed into {(name, frozenset(labels)): value}."""

    LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$')
    LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')

    def __init__(self, samples: dict, types: dict, text: str):
        self.samples = samples
        self.types = types
        self.text = text

    @classmethod
    def parse(cls, text: str) -> "Metrics":
        samples, types = {}, {}
        for line in text.splitlines():
            line = line.strip()
            if not line:
                continue
            if line.startswith("#"):
                parts = line.split()
                if len(parts) >= 4 and parts[1] == "TYPE":
                    types[parts[2]] = parts[3]
                continue
            m = cls.LINE.match(line)
            assert m, f"unparseable metrics line: {line!r}"
            name, labels, value = m.groups()
            lab = frozenset(cls.LABEL.findall(labels or ""))
            samples[(name, lab)] = float(value)
        return cls(samples, types, text)

    def get(self, name: str, **labels) -> float | None:
        return self.samples.get((name, frozenset((k, str(v)) for k, v in labels.items())))

    def total(self, name: str) -> float:
        return sum(v for (n, _), v in self.samples.items() if n == name)


# --------------------------------------------------------------------------------------------
# A python-socketio client that records everything it receives


class RecordingClient:
    """python-socketio client; every received event is appended, in order, to `events`."""

    def __init__(self, node: ChatmeshNode, roomid: str | None, transports=None,
                 query: dict | None = None):
        self.node = node
        self.roomid = roomid
        self.transports = transports
        self.query = dict(query or {})
        self.events: list[tuple] = []  # (event, arg) or (event, args-tuple) if several args
        self.connect_errors: list = []
        self.disconnected = threading.Event()
        self.disconnect_reasons: list = []
        self.cond = threading.Condition()
        self.sio = socketio.Client(reconnection=False, logger=False, engineio_logger=False,
                                   request_timeout=WAIT, handle_sigint=False)
        # python-engineio hands every incoming message to a new thread (run_async=True), so two
        # messages can reach the handlers in either order. Deliver them on the reader thread, in
        # arrival order, so that order assertions test the server and not thread scheduling.
        eio_trigger = self.sio.eio._trigger_event

        def in_order_trigger(event, *args, **kwargs):
            if event == "message":
                kwargs["run_async"] = False
            return eio_trigger(event, *args, **kwargs)

        self.sio.eio._trigger_event = in_order_trigger
        self.sio.on("*", self._on_any)
        self.sio.on("connect_error", self._on_connect_error)
        self.sio.on("disconnect", self._on_disconnect)

    # -- handlers ----------------------------------------------------------------------------
    def _on_any(self, event, *args):
        with self.cond:
            self.events.append((event, args[0] if len(args) == 1 else args))
            self.cond.notify_all()

    def _on_connect_error(self, *args):
        with self.cond:
            self.connect_errors.append(args[0] if len(args) == 1 else args)
            self.cond.notify_all()

    def _on_disconnect(self, *args):
        with self.cond:
            self.disconnect_reasons.append(args)
            self.disconnected.set()
            self.cond.notify_all()

    # -- actions -----------------------------------------------------------------------------
    def url(self) -> str:
        q = dict(self.query)
        if self.roomid is not None:
            q["roomid"] = self.roomid
        return self.node.http + ("?" + urllib.parse.urlencode(q) if q else "")

    def connect(self) -> "RecordingClient":
        self.sio.connect(self.url(), transports=self.transports, wait_timeout=WAIT)
        return self

    def emit(self, event, data=None, callback=None):
        self.sio.emit(event, data, callback=callback)

    def call(self, event, data=None, timeout=WAIT):
        return self.sio.call(event, data, timeout=timeout)

    def join(self, username: str, wait: bool = True):
        """Emit join; with wait, block until our own join message arrives."""
        self.emit("join", {"username": username})
        if wait:
            self.wait_for(lambda evs: ("message", join_msg(username)) in evs,
                          what=f"own join of {username!r}")

    def say(self, text):
        self.emit("say", {"text": text})

    def disconnect(self):
        try:
            self.sio.disconnect()
        except Exception:
            pass

    def transport(self):
        return self.sio.transport()

    # -- waits -------------------------------------------------------------------------------
    def snapshot(self) -> list:
        with self.cond:
            return list(self.events)

    def wait_for(self, pred, timeout: float = WAIT, what: str = "condition") -> list:
        """Wait until pred(events) is true; returns a snapshot of the events."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while not pred(self.events):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out after {timeout}s waiting for {what}; "
                                         f"received {len(self.events)} events: "
                                         f"{_short(self.events)}")
                self.cond.wait(left)
            return list(self.events)

    def wait_count(self, n: int, timeout: float = WAIT) -> list:
        return self.wait_for(lambda evs: len(evs) >= n, timeout, what=f"{n} events")

    def wait_event(self, event: str, timeout: float = WAIT) -> object:
        """Wait for the first event of that name not yet taken; returns its argument."""
        evs = self.wait_for(lambda evs: any(e == event for e, _ in evs), timeout,
                            what=f"event {event!r}")
        return next(a for e, a in evs if e == event)

    def messages(self) -> list:
        return [a for e, a in self.snapshot() if e == "message"]

    def errors(self) -> list:
        return [a for e, a in self.snapshot() if e == "error"]


def _short(evs, limit=20):
    s = repr(evs[-limit:])
    return s if len(s) < 3000 else s[:3000] + "..."


def join_msg(username):
    return {"event": "join", "data": {"username": username}}


def say_msg(username, text):
    return {"event": "broadcast_say", "data": {"username": username, "text": text}}


def quit_msg(username):
    return {"event": "broadcast_quit", "data": {"username": username}}


# --------------------------------------------------------------------------------------------
# Raw Engine.IO / Socket.IO over HTTP long-polling and WebSocket

HANDSHAKE_RE = (r'^0\{"sid":"(?P<sid>[A-Za-z0-9_\-]{1,64})","upgrades":%s,'
                r'"pingInterval":%d,"pingTimeout":%d,"maxPayload":%d\}$')


def handshake_regex(upgrades: str, ping_interval=25000, ping_timeout=20000,
                    max_payload=1000000) -> re.Pattern:
    return re.compile(HANDSHAKE_RE % (re.escape(upgrades), ping_interval, ping_timeout,
                                      max_payload))


class Polling:
    """Engine.IO v4 long-polling by hand with `requests`."""

    def __init__(self, node: ChatmeshNode, roomid: str | None = "r1", extra: str = ""):
        self.node = node
        self.roomid = roomid
        self.extra = extra
        self.http = requests.Session()
        self.sid: str | None = None
        self.handshake_body: str | None = None

    def url(self, sid: bool = True, transport: str = "polling", eio: str = "4") -> str:
        q = f"EIO={eio}&transport={transport}"
        if self.roomid is not None:
            q += "&roomid=" + urllib.parse.quote(self.roomid, safe="")
        if sid and self.sid:
            q += "&sid=" + self.sid
        return f"{self.node.http}/socket.io/?{q}{self.extra}"

    def open(self) -> str:
        r = self.http.get(self.url(sid=False), timeout=WAIT)
        assert r.status_code == 200, (r.status_code, r.text)
        self.handshake_body = r.text
        assert r.text.startswith("0{"), r.text
        self.sid = json.loads(r.text[1:])["sid"]
        return self.sid

    def get(self, timeout: float = WAIT) -> requests.Response:
        return self.http.get(self.url(), timeout=timeout)

    def get_packets(self, timeout: float = WAIT) -> list[str]:
        r = self.get(timeout)
        assert r.status_code == 200, (r.status_code, r.text)
        return r.text.split(RS)

    def post(self, body, timeout: float = WAIT) -> requests.Response:
        if isinstance(body, str):
            body = body.encode("utf-8")
        return self.http.post(self.url(), data=body, timeout=timeout,
                              headers={"Content-Type": "text/plain;charset=UTF-8"})

    def send(self, *packets: str):
        r = self.post(RS.join(packets))
        assert r.status_code == 200 and r.text == "ok", (r.status_code, r.text)

    def collect_until(self, pred, timeout: float = WAIT) -> list[str]:
        """GET repeatedly (answering pings) until pred(all packets so far) is true."""
        got: list[str] = []
        deadline = time.monotonic() + timeout
        while not pred(got):
            left = deadline - time.monotonic()
            assert left > 0, f"timed out; polling packets so far: {got}"
            for p in self.get_packets(timeout=left + 1):
                if p == "2":
                    self.send("3")
                else:
                    got.append(p)
        return got

    def connect_sio(self) -> str:
        """POST 40, GET 40{"sid":...}; returns the Socket.IO sid."""
        self.send("40")
        pkts = self.collect_until(lambda g: any(p.startswith("40") for p in g))
        assert len(pkts) == 1, pkts
        m = re.fullmatch(r'40\{"sid":"([^"]+)"\}', pkts[0])
        assert m, pkts[0]
        return m.group(1)


def ws_connect(node: ChatmeshNode, roomid: str | None = "r1", sid: str | None = None,
               timeout: float = WAIT, **kw) -> websocket.WebSocket:
    q = "EIO=4&transport=websocket"
    if roomid is not None:
        q += "&roomid=" + urllib.parse.quote(roomid, safe="")
    if sid:
        q += "&sid=" + sid
    return websocket.create_connection(f"{node.ws}/socket.io/?{q}", timeout=timeout, **kw)


class RawWS:
    """Engine.IO v4 over a websocket-client connection, by hand."""

    def __init__(self, node: ChatmeshNode, roomid: str | None = "r1", **kw):
        self.ws = ws_connect(node, roomid, **kw)
        self.open_packet = self.ws.recv()
        assert isinstance(self.open_packet, str) and self.open_packet.startswith("0{"), \
            self.open_packet
        self.sid = json.loads(self.open_packet[1:])["sid"]

    def send(self, text: str):
        self.ws.send(text)

    def recv(self, timeout: float = WAIT, answer_pings: bool = True):
        """Next frame other than ping (pings are answered with pong)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no frame within %.1fs" % timeout)
            self.ws.settimeout(left)
            f = self.ws.recv()
            if answer_pings and f == "2":
                self.ws.send("3")
                continue
            return f

    def recv_until(self, pred, timeout: float = WAIT) -> list:
        got = []
        deadline = time.monotonic() + timeout
        while not pred(got):
            got.append(self.recv(timeout=max(0.01, deadline - time.monotonic())))
        return got

    def connect_sio(self) -> str:
        self.send("40")
        f = self.recv()
        m = re.fullmatch(r'40\{"sid":"([^"]+)"\}', f)
        assert m, f
        return m.group(1)

    def join(self, username: str):
        self.send("42" + json.dumps(["join", {"username": username}], separators=(",", ":"),
                                    ensure_ascii=False))
        want = sio_event("message", join_msg(username))
        self.recv_until(lambda g: want in g)

    def close(self):
        try:
            self.ws.close(timeout=1)
        except Exception:
            pass

    def abort(self):
        try:
            self.ws.shutdown()
        except Exception:
            pass


def sio_event(event: str, data, ack: int | None = None) -> str:
    """The exact Socket.IO EVENT packet text, as socket.io (JSON.stringify) encodes it."""
    return "42" + ("" if ack is None else str(ack)) + json.dumps(
        [event, data], separators=(",", ":"), ensure_ascii=False)


def wait_closed(ws: websocket.WebSocket, timeout: float = WAIT) -> list:
    """Read until the server closes the connection; returns the frames read before.

    A close frame, EOF or a reset all count as closed; a timeout fails."""
    frames = []
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"connection still open after {timeout}s; frames: "
                                 f"{_short(frames)}")
        ws.settimeout(left)
        try:
            op, data = ws.recv_data(control_frame=True)
        except websocket.WebSocketTimeoutException:
            continue
        except (websocket.WebSocketConnectionClosedException, ConnectionError, OSError,
                websocket.WebSocketProtocolException, websocket.WebSocketPayloadException):
            return frames
        if op == websocket.ABNF.OPCODE_CLOSE:
            return frames
        if op == websocket.ABNF.OPCODE_TEXT:
            data = data.decode("utf-8", "replace")
        frames.append(data)


# --------------------------------------------------------------------------------------------
# Raw TCP WebSocket (for malformed frames)


def raw_ws_upgrade(node: ChatmeshNode, roomid: str = "r1",
                   timeout: float = WAIT) -> tuple[socket.socket, bytes]:
    """Does the HTTP upgrade on a plain socket; returns (socket, bytes received after 101)."""
    s = socket.create_connection(("127.0.0.1", node.port), timeout=timeout)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET /socket.io/?EIO=4&transport=websocket&roomid={roomid} HTTP/1.1\r\n"
               f"Host: 127.0.0.1:{node.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(4096)
        assert chunk, f"closed during upgrade: {buf!r}"
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return s, rest


def ws_frame(opcode: int, payload: bytes, fin: bool = True, mask: bool = True,
             rsv: int = 0) -> bytes:
    b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
    n = len(payload)
    if n < 126:
        hdr = bytes([b0, (0x80 if mask else 0) | n])
    elif n < 65536:
        hdr = bytes([b0, (0x80 if mask else 0) | 126]) + n.to_bytes(2, "big")
    else:
        hdr = bytes([b0, (0x80 if mask else 0) | 127]) + n.to_bytes(8, "big")
    if not mask:
        return hdr + payload
    key = os.urandom(4)
    return hdr + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def read_until_eof(s: socket.socket, timeout: float = WAIT) -> bytes:
    """Reads until the peer closes (EOF or reset); asserts that happens within timeout."""
    got = b""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"socket still open after {timeout}s; read {got[:200]!r}")
        s.settimeout(left)
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return got
        if not chunk:
            return got
        got += chunk
