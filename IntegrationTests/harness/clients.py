"""Socket.IO clients of the suites and what they read: a recording client, an application-like
client that reconnects and re-joins, a paced sender, and the chat messages they check."""

from __future__ import annotations

import threading
import time
import urllib.parse
import uuid

import socketio

from .process import WAIT, wait_on


def unique_room(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def join_msg(username):
    return {"event": "join", "data": {"username": username}}


def say_msg(username, text):
    return {"event": "broadcast_say", "data": {"username": username, "text": text}}


def quit_msg(username):
    return {"event": "broadcast_quit", "data": {"username": username}}


def in_order_client(**kw) -> socketio.Client:
    """socketio.Client whose "message" handlers run on its reader thread, in arrival order.

    python-engineio hands every incoming message to a new thread (run_async=True), so two
    messages can reach the handlers in either order; order assertions must test the server,
    not thread scheduling. The handlers only record, so they cannot block the reader."""
    sio = socketio.Client(handle_sigint=False, request_timeout=WAIT, **kw)
    trigger = sio.eio._trigger_event

    def inline(event, *args, **kwargs):
        if event == "message":
            kwargs["run_async"] = False
        return trigger(event, *args, **kwargs)

    sio.eio._trigger_event = inline
    return sio


def _short(evs, limit=20):
    s = repr(evs[-limit:])
    return s if len(s) < 3000 else s[:3000] + "..."


class RecordingClient:
    """python-socketio client; every received event is appended, in order, to `events`.
    `node` is anything with an `http` base URL."""

    def __init__(self, node, roomid: str | None, transports=None, query: dict | None = None):
        self.node = node
        self.roomid = roomid
        self.transports = transports
        self.query = dict(query or {})
        self.events: list[tuple] = []  # (event, arg) or (event, args-tuple) if several args
        self.connect_errors: list = []
        self.disconnected = threading.Event()
        self.disconnect_reasons: list = []
        self.cond = threading.Condition()
        self.sio = in_order_client(reconnection=False, logger=False, engineio_logger=False)
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

    close = disconnect

    def transport(self):
        return self.sio.transport()

    # -- waits -------------------------------------------------------------------------------
    def snapshot(self) -> list:
        with self.cond:
            return list(self.events)

    def wait_for(self, pred, timeout: float = WAIT, what: str = "condition") -> list:
        """Wait until pred(events) is true; returns a snapshot of the events."""
        return wait_on(self.cond, lambda: pred(self.events), timeout,
                       lambda: f"timed out after {timeout}s waiting for {what}; received "
                               f"{len(self.events)} events: {_short(self.events)}",
                       result=lambda: list(self.events))

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


OrderedClient = RecordingClient  # the mesh tests' name: it records in wire order


class SioClient:
    """python-socketio with reconnection on. Its `connect` handler emits `join` each time (as an
    app does), so after a reconnect it is back in its room. Records (monotonic time, event,
    data) of everything received, and every connect / disconnect with its reason."""

    def __init__(self, base_url: str, room: str, username: str, transports=None,
                 reconnection_delay: float = 0.5, rejoin_on_server_disconnect: bool = False,
                 client_kw: dict | None = None):
        """`client_kw`: more socketio.Client keywords (e.g. logger, engineio_logger,
        http_session), for tests that read what the client logged or received."""
        self.base_url = base_url
        self.room = room
        self.username = username
        self.transports = transports
        self.rejoin_on_server_disconnect = rejoin_on_server_disconnect
        self.cond = threading.Condition()
        self.events: list[tuple[float, str, object]] = []
        self.connects: list[tuple[float, str | None]] = []     # (time, transport)
        self.disconnects: list[tuple[float, object]] = []      # (time, reason)
        self.join_acks: list[tuple[float, object]] = []
        self.manual_reconnects = 0
        self._closing = False
        self._reconnection_delay = reconnection_delay
        self._manual_lock = threading.Lock()
        self._client_kw = dict(client_kw or {})
        self.sio = self._new_sio()

    def _new_sio(self) -> socketio.Client:
        sio = in_order_client(reconnection=True, reconnection_delay=self._reconnection_delay,
                              reconnection_delay_max=2, randomization_factor=0.5,
                              **self._client_kw)
        sio.on("connect", lambda: self._on_connect(sio))
        sio.on("disconnect", lambda *a: self._on_disconnect(sio, *a))
        sio.on("*", self._on_any)
        return sio

    # -- handlers ----------------------------------------------------------------------------
    def _on_connect(self, sio):
        with self.cond:
            self.connects.append((time.monotonic(), sio.transport()))
            self.cond.notify_all()
        # Re-join on every (re)connect, as an application does.
        sio.emit("join", {"username": self.username}, callback=self._on_join_ack)

    def _on_join_ack(self, *args):
        with self.cond:
            self.join_acks.append((time.monotonic(), args[0] if args else None))
            self.cond.notify_all()

    def _on_disconnect(self, sio, *args):
        with self.cond:
            self.disconnects.append((time.monotonic(), args[0] if args else None))
            self.cond.notify_all()
        if self.rejoin_on_server_disconnect and not self._closing and sio is self.sio and \
                args and args[0] == sio.reason.SERVER_DISCONNECT:
            # python-socketio does not reconnect after a server-initiated disconnect; an app that
            # wants to stay must connect again itself.
            threading.Thread(target=self._manual_reconnect, args=(sio,), daemon=True).start()

    def _manual_reconnect(self, old):
        """Connects a fresh socketio.Client once the old one has fully stopped (reusing it while
        its read loop still runs would race with that loop)."""
        with self._manual_lock:
            if old is not self.sio:
                return
            deadline = time.monotonic() + 15
            while old.eio.state != "disconnected" and time.monotonic() < deadline:
                time.sleep(0.02)
            delay = 0.1
            while not self._closing and time.monotonic() < deadline:
                sio = self._new_sio()
                self.sio = sio
                try:
                    sio.connect(self.url(), transports=self.transports, wait_timeout=WAIT)
                    self.manual_reconnects += 1
                    return
                except Exception:  # noqa: BLE001 - retried until the deadline
                    try:
                        sio.disconnect()
                    except Exception:  # noqa: BLE001
                        pass
                    time.sleep(delay)
                    delay = min(2 * delay, 1.0)

    def _on_any(self, event, *args):
        with self.cond:
            self.events.append((time.monotonic(), event, args[0] if len(args) == 1 else args))
            self.cond.notify_all()

    # -- actions -----------------------------------------------------------------------------
    def url(self) -> str:
        return self.base_url + "?" + urllib.parse.urlencode({"roomid": self.room})

    def connect(self) -> "SioClient":
        self.sio.connect(self.url(), transports=self.transports, wait_timeout=WAIT)
        self.wait_joined(1)
        return self

    def wait_joined(self, n: int, timeout: float = WAIT) -> None:
        """Waits for the n-th successful join ack (n-th (re)connect)."""
        self.wait(lambda: sum(1 for _, a in self.join_acks
                              if isinstance(a, dict) and a.get("ok")) >= n,
                  timeout, f"{self.username}: join ack #{n} (acks {self.join_acks})")

    def wait(self, pred, timeout: float = WAIT, what: str = "condition"):
        wait_on(self.cond, pred, timeout,
                lambda: f"timed out after {timeout}s waiting for {what}; connects "
                        f"{self.connects}, disconnects {self.disconnects}, last events "
                        f"{self.events[-8:]}")

    def messages(self, since: float = 0.0) -> list[tuple[float, dict]]:
        with self.cond:
            return [(t, a) for t, e, a in self.events
                    if e == "message" and t >= since and isinstance(a, dict)]

    def says(self, since: float = 0.0) -> list[tuple[float, str, str]]:
        return [(t, a["data"].get("username"), a["data"].get("text"))
                for t, a in self.messages(since) if a.get("event") == "broadcast_say"]

    def saw(self, event: str, username: str, text: str | None = None) -> bool:
        for _, a in self.messages():
            if a.get("event") == event and a.get("data", {}).get("username") == username and \
                    (text is None or a["data"].get("text") == text):
                return True
        return False

    def close(self):
        self._closing = True
        try:
            self.sio.shutdown()
        except Exception:  # noqa: BLE001
            pass


def close_all(clients) -> None:
    """Closes every client (RecordingClient or SioClient) in parallel, a few seconds at most."""
    threads = [threading.Thread(target=c.close, daemon=True) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=5)


# --------------------------------------------------------------------------------------------
# What the clients received


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


def order_report(got: list[int], sent: int) -> str:
    """Counts for a delivery check: received, distinct, duplicates, missing, first reorder."""
    seen, dups = set(), 0
    for v in got:
        if v in seen:
            dups += 1
        seen.add(v)
    missing = sorted(set(range(sent)) - seen)
    reorder = next((i for i in range(1, len(got)) if got[i] <= got[i - 1]), None)
    return (f"sent {sent}, received {len(got)}, distinct {len(seen)}, duplicates {dups}, "
            f"missing {len(missing)}{' ' + str(missing[:20]) if missing else ''}, "
            f"first out-of-order index {reorder}")


class PacedSender(threading.Thread):
    """Says "<name>:<i>" for i = 0, 1, ... every `interval` s until stop(); `sent` counts.
    With `acked`, every say carries an ack callback: `acks` {i: reply}, `sent_at` the times."""

    def __init__(self, client, name: str, interval: float = 0.01, acked: bool = False):
        super().__init__(daemon=True, name=f"sender-{name}")
        self.client, self.name_, self.interval, self.acked = client, name, interval, acked
        self.sent = 0
        self.acks: dict[int, object] = {}
        self.sent_at: list[float] = []
        self.error: BaseException | None = None
        self._halt = threading.Event()
        self._lock = threading.Lock()

    def _ack(self, i):
        def cb(*args):
            with self._lock:
                self.acks[i] = args[0] if len(args) == 1 else args
        return cb

    def run(self):
        try:
            nxt = time.monotonic()
            while not self._halt.is_set():
                i = self.sent
                text = f"{self.name_}:{i}"
                if self.acked:
                    self.sent_at.append(time.monotonic())
                    self.client.emit("say", {"text": text}, callback=self._ack(i))
                else:
                    self.client.say(text)
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

    def ok_acks(self) -> int:
        with self._lock:
            return sum(1 for a in self.acks.values() if a == {"ok": True})

    def sent_between(self, t0: float, t1: float) -> int:
        return sum(1 for t in self.sent_at if t0 <= t < t1)


def blast(clients: dict, per_sender: int, join_timeout: float = 20) -> float:
    """Each client of {name: client} says "<name>:0".."<name>:<per_sender-1>" as fast as it
    can, all at once, one thread each; returns the seconds until every thread was done."""
    def send(client, name):
        for k in range(per_sender):
            client.say(f"{name}:{k}")

    t0 = time.monotonic()
    threads = [threading.Thread(target=send, args=(c, name), daemon=True)
               for name, c in clients.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=join_timeout)
    return time.monotonic() - t0
