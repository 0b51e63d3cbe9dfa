"""Connection-state recovery (docs/RECOVERY.md) by hand: a Socket.IO client over a raw WebSocket
that speaks the CONNECT pid/offset exchange, records every frame both ways, and keeps the last
offset it saw, as socket.io-client 4.6+ does (../shared/reference/socketio-recovery.md).

    x = RecoveryClient(mesh["a1"], room).connect()         # 40  ->  40{"sid","pid"}
    x.join("x")
    ...                                                     # x.abort(): TCP gone, no 41
    y = x.resume(mesh["a2"])                                # 40{"pid","offset"} on a2
    assert y.recovered_from(x)

The connection is `chatmesh_testkit.ws_connect`; chat messages are harness.clients' builders;
clusters are harness.cluster's with a `recovery` section (`recovery_section` below)."""

from __future__ import annotations

import json
import re
import socket
import threading
import time

import websocket

from chatmesh_testkit import WAIT, _short, join_msg, quit_msg, ws_connect  # noqa: F401
from harness.clients import unique_room  # noqa: F401 (re-exported)
from harness.cluster import FAST_LIMITS  # noqa: F401 (re-exported)
from harness.process import wait_on


def recovery_section(max_disconnection_ms: int = 30000, **more) -> dict:
    """A [recovery] section: on, with a max_disconnection (ms) a test can outwait."""
    return {"enabled": "on", "max_disconnection": max_disconnection_ms, **more}


# The /metrics series (ChatCore RecoveryMetrics).
FAILED = "chatmesh_recovery_failed_total"
ATTEMPTED = "chatmesh_recovery_attempts_total"
SUCCEEDED = "chatmesh_recovery_succeeded_total"
TAKEN_OVER = "chatmesh_recovery_taken_over_total"

CONNECT_REPLY = re.compile(r"^40(\{.*\})$", re.S)
EVENT = re.compile(r"^42(\d*)(\[.*\])$", re.S)
ACK = re.compile(r"^43(\d+)(\[.*\])$", re.S)


def packet(event: str, data) -> str:
    return "42" + json.dumps([event, data], separators=(",", ":"), ensure_ascii=False)


class RecoveryClient:
    """One Engine.IO session over WebSocket to `node`'s room `room`, read by a thread of its own
    (which answers pings). `frames` holds (monotonic time, "<-" or "->", text) of everything, in
    order; `messages` (time, payload, offset or None) every `message` event; `last_offset` the
    last string offset seen, as the official client keeps it. `connect_reply` is the parsed
    CONNECT answer (`sid`, `pid`), `connect_error` a CONNECT_ERROR's payload."""

    def __init__(self, node, room: str | None, name: str = "client"):
        self.node = node
        self.room = room
        self.name = name
        self.cond = threading.Condition()
        self.frames: list[tuple[float, str, str]] = []
        self.messages: list[tuple[float, dict, str | None]] = []
        self.errors: list = []            # payloads of the per-client `error` event
        self.bad_frames: list[tuple[str, str]] = []   # frames this client could not read
        self.acks: dict[int, list] = {}
        self.connect_reply: dict | None = None
        self.connect_error = None
        self.connect_sent_at: float | None = None
        self.connected_at: float | None = None
        self.messages_before_reply = 0    # message events received before the CONNECT reply
        self.last_offset: str | None = None
        self.closed_at: float | None = None
        self._next_ack = 0
        self._halt = threading.Event()
        self.ws = ws_connect(node, room)
        self.open_packet = self.ws.recv()
        assert isinstance(self.open_packet, str) and self.open_packet.startswith("0{"), \
            self.open_packet
        self.eio_sid = json.loads(self.open_packet[1:])["sid"]
        self.frames.append((time.monotonic(), "<-", self.open_packet))
        self.ws.settimeout(1.0)  # only bounds how long close() waits for the reader
        self._reader = threading.Thread(target=self._read, daemon=True, name=f"rc-{name}")
        self._reader.start()

    # -- reading -----------------------------------------------------------------------------
    def _read(self) -> None:
        while not self._halt.is_set():
            try:
                f = self.ws.recv()
            except websocket.WebSocketTimeoutException:
                continue
            except Exception:  # noqa: BLE001 - closed, reset, or closed by us: all the same here
                break
            if f == "" or f is None:
                break   # a close frame
            if isinstance(f, bytes):
                f = f.decode("utf-8", "replace")
            now = time.monotonic()
            with self.cond:
                self.frames.append((now, "<-", f))
                try:
                    self._parse(now, f)
                except Exception as e:  # noqa: BLE001 - kept for the test to see, reading goes on
                    self.bad_frames.append((f, repr(e)))
                self.cond.notify_all()
            if f == "2":
                self._send("3")
        with self.cond:
            self.closed_at = time.monotonic()
            self.cond.notify_all()

    def _parse(self, now: float, f: str) -> None:
        if m := CONNECT_REPLY.match(f):
            self.connect_reply = json.loads(m.group(1))
            self.connected_at = now
        elif f.startswith("44"):
            self.connect_error = json.loads(f[2:]) if len(f) > 2 else None
        elif m := ACK.match(f):
            self.acks[int(m.group(1))] = json.loads(m.group(2))
        elif m := EVENT.match(f):
            args = json.loads(m.group(2))
            if args and args[0] == "message":
                offset = args[2] if len(args) == 3 and isinstance(args[2], str) else None
                if len(args) != (3 if offset is not None else 2):
                    raise ValueError("a message event with other arguments than (payload[, offset])")
                self.messages.append((now, args[1], offset))
                if offset is not None:
                    self.last_offset = offset
                if self.connect_reply is None:
                    self.messages_before_reply += 1
            elif args and args[0] == "error":
                self.errors.append(args[1] if len(args) > 1 else None)

    # -- sending -----------------------------------------------------------------------------
    def _send(self, text: str) -> None:
        with self.cond:
            self.frames.append((time.monotonic(), "->", text))
        try:
            self.ws.send(text)
        except Exception:  # noqa: BLE001 - the reader sees the close
            pass

    def connect(self, auth: dict | str | None = None, wait: bool = True) -> "RecoveryClient":
        """Sends CONNECT: `40`, `40<json of auth>`, or `40<auth>` verbatim when it is a str.
        With wait, blocks for the reply (CONNECT or CONNECT_ERROR)."""
        body = "" if auth is None else auth if isinstance(auth, str) else \
            json.dumps(auth, separators=(",", ":"))
        self.connect_sent_at = time.monotonic()
        self._send("40" + body)
        if wait:
            self.wait_for(lambda: self.connect_reply is not None or self.connect_error is not None,
                          what="the CONNECT reply")
        return self

    def resume(self, node, offset: str | None = ..., pid=..., room: str | None = ...,
               wait: bool = True, name: str | None = None) -> "RecoveryClient":
        """A new connection to `node` that asks to recover this client's session: its pid and
        last offset (either replaceable, None leaves the key out), as socket.io-client does
        after a disconnect it did not ask for. Sends nothing else (no join)."""
        pid = self.pid if pid is ... else pid
        offset = self.last_offset if offset is ... else offset
        auth = {k: v for k, v in (("pid", pid), ("offset", offset)) if v is not None}
        c = RecoveryClient(node, self.room if room is ... else room, name or self.name + "'")
        return c.connect(auth, wait=wait)

    def emit(self, event: str, data, ack: bool = False) -> int | None:
        if not ack:
            self._send(packet(event, data))
            return None
        with self.cond:
            i = self._next_ack
            self._next_ack += 1
        self._send("42" + str(i) + json.dumps([event, data], separators=(",", ":"),
                                              ensure_ascii=False))
        return i

    def call(self, event: str, data, timeout: float = WAIT):
        i = self.emit(event, data, ack=True)
        self.wait_for(lambda: i in self.acks, timeout, f"the ack of {event}")
        return self.acks[i]

    def join(self, username: str, wait: bool = True) -> None:
        self.emit("join", {"username": username})
        if wait:
            self.wait_for(lambda: join_msg(username) in self.payloads(),
                          what=f"own join of {username!r}")

    def say(self, text: str) -> None:
        self.emit("say", {"text": text})

    def abort(self) -> None:
        """Ends the TCP connection without `41` or a WebSocket close: a transport blip."""
        self._end(close_frame=False)

    def disconnect(self) -> None:
        """An explicit disconnect: `41`, then the WebSocket closed."""
        self._send("41")
        self.close()

    def close(self) -> None:
        """A WebSocket close frame, then the TCP connection ended (no `41`)."""
        self._end(close_frame=True)

    def _end(self, close_frame: bool) -> None:
        self._halt.set()
        if close_frame:
            try:
                self.ws.send_close()
            except Exception:  # noqa: BLE001
                pass
        # shutdown() sends the FIN now and wakes the reader's recv; a bare close() from this
        # thread would wait for that recv to time out first.
        try:
            self.ws.sock.shutdown(socket.SHUT_RDWR)
        except Exception:  # noqa: BLE001 - closed already
            pass
        try:
            self.ws.shutdown()
        except Exception:  # noqa: BLE001
            pass
        self._reader.join(timeout=2)

    # -- what it saw -------------------------------------------------------------------------
    @property
    def sid(self) -> str | None:
        return (self.connect_reply or {}).get("sid")

    @property
    def pid(self) -> str | None:
        return (self.connect_reply or {}).get("pid")

    def recovered_from(self, old: "RecoveryClient") -> bool:
        """The CONNECT reply names `old`'s session: the client reports `recovered`."""
        return self.connect_reply == {"sid": old.sid, "pid": old.pid}

    def sent(self) -> list[str]:
        with self.cond:
            return [t for _, d, t in self.frames if d == "->"]

    def received(self) -> list[str]:
        with self.cond:
            return [t for _, d, t in self.frames if d == "<-"]

    def payloads(self) -> list[dict]:
        with self.cond:
            return [p for _, p, _ in self.messages]

    def says(self, usernames=None) -> list[tuple[str, str]]:
        """(username, text) of every broadcast_say, in arrival order."""
        out = []
        for p in self.payloads():
            if isinstance(p, dict) and p.get("event") == "broadcast_say":
                d = p.get("data", {})
                if usernames is None or d.get("username") in usernames:
                    out.append((d.get("username"), d.get("text")))
        return out

    def count(self, payload: dict) -> int:
        return sum(1 for p in self.payloads() if p == payload)

    def closed(self) -> bool:
        return self.closed_at is not None

    def wait_for(self, pred, timeout: float = WAIT, what: str = "condition"):
        return wait_on(self.cond, pred, timeout,
                       lambda: f"{self.name}: timed out after {timeout}s waiting for {what}; "
                               f"last frames {_short(self.frames, 12)}; unreadable frames "
                               f"{self.bad_frames[:3]}")

    def wait_closed(self, timeout: float = WAIT) -> None:
        self.wait_for(self.closed, timeout, "the server to close the connection")

    def __repr__(self):
        return f"RecoveryClient({self.name}, sid={self.sid}, pid={self.pid})"


def failures(node) -> dict[str, float]:
    """chatmesh_recovery_failed_total by reason."""
    m = node.metrics()
    return {dict(k[1]).get("reason"): v for k, v in m.samples.items() if k[0] == FAILED}
