"""Helpers for the chatmesh integration tests: a node under test, recording clients, raw wire.

Everything here talks to one chatmesh node on loopback. Waits are short (5 s by default) so
that a broken server fails a test quickly instead of hanging the suite.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import socket
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

import requests
import websocket

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.clients import (OrderedClient, RecordingClient, _short, join_msg,  # noqa: E402,F401
                             quit_msg, say_msg, unique_room)
from harness.node import Metrics, NodeProcess, config_text  # noqa: E402,F401
from harness.process import (REPO, WAIT, chatmesh_binary, free_port, free_ports,  # noqa: E402,F401
                             wait_for_healthz, wait_until)

# python-engineio's client drops the connection ("Unexpected packet from server, aborting") when
# one long-polling response carries more than 16 packets; chatmesh sends at most 16 per
# response for that reason. The stock limit stays in force here, so the tests prove it.

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


# --------------------------------------------------------------------------------------------
# The node under test


class ChatmeshNode(NodeProcess):
    """One `chatmesh serve` process on a free loopback port, with a temp cluster.conf."""

    def __init__(self, engineio: dict | None = None, limits: dict | None = None,
                 cluster: dict | None = None, node_name: str = "a1"):
        self.engineio = {**DEFAULT_ENGINEIO, **(engineio or {})}
        self.limits = {**DEFAULT_LIMITS, **(limits or {})}
        self.cluster = dict(cluster or {})
        self.dir = Path(tempfile.mkdtemp(prefix="chatmesh-it-"))
        port, mesh_port = free_ports(2)  # bound at once, so they differ
        super().__init__(self.dir, self.dir / "cluster.conf", node_name, port, mesh_port,
                         log_name="stderr")

    def config_text(self) -> str:
        return config_text([self], fanout="mesh", cluster=self.cluster,
                           sections={"engineio": self.engineio, "limits": self.limits},
                           writer="IntegrationTests/integration")

    def start(self, timeout: float = 20.0) -> "ChatmeshNode":
        self.conf_path.write_text(self.config_text())
        return super().start(timeout=timeout)

    def stderr_text(self, limit: int = 20000) -> str:
        return self.log_text(limit)

    def healthz(self) -> dict:
        body = super().healthz()
        assert body.get("status") == "ok", body
        return body

    def dump_logs(self, limit: int = 20000) -> str:
        return f"--- config ---\n{self.config_text()}" + super().dump_logs(limit)

    def remove_dir(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


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


def recv_until_closed(s: socket.socket, timeout: float = WAIT, on_chunk=None,
                      still_open=None) -> str:
    """Reads `s` until the peer closes it: returns "eof" or "reset", or sooner what
    `on_chunk(chunk)` returns when that is truthy (say, a close frame seen). Asserts it ends
    within timeout, with `still_open()` (or a plain sentence) as the message."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(still_open() if still_open else
                                 f"connection still open after {timeout}s")
        s.settimeout(left)
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return "reset"
        if not chunk:
            return "eof"
        if on_chunk is not None and (ended := on_chunk(chunk)):
            return ended
