"""The bench tool's own counting is tested: `chatmesh bench` runs against a tiny Engine.IO /
Socket.IO WebSocket chat server (here, in python) that drops, duplicates and reorders
deliveries on purpose, and the bench's JSON must report exactly what the server injected.

The server speaks just what the bench (and ../shared/bench/floor.c) speak: WebSocket upgrade,
`0{…}` open, `40` → `40{sid}`, `join` and `say` broadcast to the room as `message` events. For
measured says (text `s<sender>:<seq>:…`) delivered to a victim receiver (odd client number):
seq ≡ 2 (mod 10) is dropped, seq ≡ 4 is sent twice, seq ≡ 6 is held back and sent right after
seq ≡ 7 (a swap). A held say whose successor never comes is lost.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import re
import struct
import subprocess
import threading
from collections import Counter, defaultdict

import pytest

from chatmesh_testkit import chatmesh_binary, free_port

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def ws_frame(text: str) -> bytes:
    data = text.encode()
    n = len(data)
    if n < 126:
        head = struct.pack("!BB", 0x81, n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x81, 126, n)
    else:
        head = struct.pack("!BBQ", 0x81, 127, n)
    return head + data


class Conn:
    def __init__(self, writer, room: str):
        self.writer = writer
        self.room = room
        self.name: str | None = None

    def send(self, text: str) -> None:
        if not self.writer.is_closing():
            self.writer.write(ws_frame(text))

    @property
    def victim(self) -> bool:
        m = re.fullmatch(r"b(\d+)", self.name or "")
        return bool(m) and int(m.group(1)) % 2 == 1


class MisbehavingServer:
    """Runs an asyncio server in its own thread; `injected` counts what it did on purpose."""

    def __init__(self):
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self.rooms: dict[str, list[Conn]] = defaultdict(list)
        self.injected: Counter = Counter()
        self.held: dict[tuple[int, int], str] = {}  # (id(receiver), sender) -> frame text
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self.thread.start()
        assert self.ready.wait(10), "test server did not start"
        return self

    def stop(self):
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)

    def counts(self) -> dict:
        """Snapshot on the server's loop (after the bench has exited)."""
        fut = asyncio.run_coroutine_threadsafe(self._counts(), self.loop)
        return fut.result(timeout=10)

    async def _counts(self) -> dict:
        c = dict(self.injected)
        c["held_never_sent"] = len(self.held)
        return c

    def _run(self):
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(asyncio.start_server(self._client, "127.0.0.1", self.port))
        self.ready.set()
        try:
            self.loop.run_forever()
        finally:
            server.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        conn = None
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            path = head.split(" ", 2)[1]
            room = re.search(r"[?&]roomid=([^& ]*)", path).group(1)
            key = re.search(r"(?im)^sec-websocket-key:\s*(\S+)", head).group(1).encode()
            accept = base64.b64encode(hashlib.sha1(key + GUID).digest()).decode()
            writer.write(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                          f"Sec-WebSocket-Accept: {accept}\r\n\r\n").encode())
            conn = Conn(writer, room)
            conn.send('0{"sid":"test","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}')
            while True:
                b0, b1 = await reader.readexactly(2)
                n = b1 & 0x7F
                if n == 126:
                    n = struct.unpack("!H", await reader.readexactly(2))[0]
                elif n == 127:
                    n = struct.unpack("!Q", await reader.readexactly(8))[0]
                mask = await reader.readexactly(4) if b1 & 0x80 else b"\0\0\0\0"
                data = bytes(c ^ mask[i % 4] for i, c in enumerate(await reader.readexactly(n)))
                if b0 & 0x0F == 8:
                    break
                if b0 & 0x0F == 1:
                    self._packet(conn, data.decode())
        except (asyncio.IncompleteReadError, ConnectionError, AttributeError):
            pass
        finally:
            if conn is not None and conn in self.rooms[conn.room]:
                self.rooms[conn.room].remove(conn)
            writer.close()

    def _packet(self, conn: Conn, text: str):
        if text == "40":
            conn.send('40{"sid":"s"}')
        elif text.startswith('42["join"'):
            conn.name = json.loads(text[2:])[1]["username"]
            self.rooms[conn.room].append(conn)
            self._broadcast(conn.room, {"event": "join", "data": {"username": conn.name}})
        elif text.startswith('42["say"') and conn.name:
            say = json.loads(text[2:])[1]["text"]
            self._deliver_say(conn, say)

    def _broadcast(self, room: str, event: dict):
        frame = "42" + json.dumps(["message", event], separators=(",", ":"))
        for member in self.rooms[room]:
            member.send(frame)

    def _deliver_say(self, sender: Conn, say: str):
        frame = "42" + json.dumps(["message", {"event": "broadcast_say", "data": {"username": sender.name, "text": say}}],
                                  separators=(",", ":"))
        m = re.match(r"s(\d+):(\d+):", say)
        for member in self.rooms[sender.room]:
            if not m or not member.victim:
                member.send(frame)
                continue
            sid, seq = int(m.group(1)), int(m.group(2))
            key = (id(member), sid)
            if seq % 10 == 2:
                self.injected["dropped"] += 1
            elif seq % 10 == 4:
                member.send(frame)
                member.send(frame)
                self.injected["duplicated"] += 1
            elif seq % 10 == 6:
                self.held[key] = frame
            elif seq % 10 == 7 and key in self.held:
                member.send(frame)
                member.send(self.held.pop(key))
                self.injected["reordered"] += 1
            else:
                member.send(frame)


@pytest.fixture
def misbehaving_server():
    server = MisbehavingServer().start()
    yield server
    server.stop()


def run_bench(port: int, *args: str) -> dict:
    binary = chatmesh_binary()
    if not binary.exists():
        pytest.fail(f"chatmesh binary not found at {binary} (run `swift build`)")
    cmd = [str(binary), "bench", "--json-only", "--targets", f"127.0.0.1:{port}", *args]
    proc = subprocess.run(cmd, capture_output=True, timeout=120, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr.decode()
    lines = [l for l in proc.stdout.decode().splitlines() if l.startswith("{")]
    assert lines, proc.stdout.decode() + proc.stderr.decode()
    return json.loads(lines[-1])


def test_bench_counts_exactly_what_a_misbehaving_server_injects(misbehaving_server):
    result = run_bench(misbehaving_server.port, "--clients", "8", "--rooms", "2", "--senders", "4",
                       "--rate", "100", "--duration", "2", "--warmup", "0.5", "--drain", "1",
                       "--connect-rate", "0")
    injected = misbehaving_server.counts()
    assert result["connected"] == 8 and result["joined"] == 8, result
    # every measured say was expected by the 4 members of its room
    assert result["expected"] == result["sent"] * 4, result
    assert injected.get("dropped", 0) > 10 and injected.get("duplicated", 0) > 10 and injected.get("reordered", 0) > 10
    assert result["lost"] == injected.get("dropped", 0) + injected["held_never_sent"], (result, injected)
    assert result["duplicated"] == injected["duplicated"], (result, injected)
    assert result["reordered"] == injected["reordered"], (result, injected)
    assert result["received"] == result["expected"] - result["lost"], result


def test_bench_reports_a_clean_run_as_clean(misbehaving_server):
    # One client (b0, not a victim): nothing is injected, so nothing may be reported.
    result = run_bench(misbehaving_server.port, "--clients", "1", "--rooms", "1", "--senders", "1",
                       "--rate", "100", "--duration", "1", "--warmup", "0.2", "--drain", "0.5")
    assert misbehaving_server.counts().get("dropped", 0) == 0
    assert result["sent"] >= 90 and result["expected"] == result["sent"], result
    assert (result["lost"], result["duplicated"], result["reordered"]) == (0, 0, 0), result
    assert result["latency_p50_ms"] > 0, result


def test_window_mode_keeps_going_through_drops(misbehaving_server):
    # rate 0: a sender's window is refilled by its own echo; a victim sender (b1) loses some
    # echoes, which must not stall the run.
    result = run_bench(misbehaving_server.port, "--clients", "4", "--rooms", "1", "--senders", "2",
                       "--rate", "0", "--window", "4", "--duration", "2", "--warmup", "0.3", "--drain", "1")
    injected = misbehaving_server.counts()
    assert result["sent"] > 500, result
    assert result["lost"] == injected.get("dropped", 0) + injected["held_never_sent"], (result, injected)
    assert result["duplicated"] == injected.get("duplicated", 0), (result, injected)
    assert result["reordered"] == injected.get("reordered", 0), (result, injected)
