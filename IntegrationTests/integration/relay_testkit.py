"""Helpers for the relay tests (issue 15, docs/RELAY.md): a session's requests reaching nodes
other than its owner, which relay them over the mesh.

    tags = node_tags(mesh)                     # {"a1": "Xy_3", ...}: each node's sid tag
    owner_of(tags, sid)                        # the node a sid names
    p = RoutedPolling(mesh["a1"], [mesh["a2"], mesh["a3"], mesh["a1"]], room)
    p.open()                                   # handshake on a1; then a2, a3, a1, a2, ...
    relay_counts(node)                         # chatmesh_relay_requests_total by (kind, result)
    ClientLog()                                # python-socketio clients' logs and HTTP errors

A sid is 20 characters of base64url: the owner's 4-character tag, then 16 random ones. The tests
learn the tags by handshaking on each node, so they do not depend on how a tag is computed.
"""

from __future__ import annotations

import base64
import itertools
import logging
import math
import os
import re
import threading
import time

import requests

from chatmesh_testkit import RS, WAIT, Polling, sio_event

SID_RE = re.compile(r"^[A-Za-z0-9_-]{20}$")
TAG_LEN = 4
UNKNOWN_SID = {"code": 1, "message": "Session ID unknown"}

# What python-engineio logs when the server refused a request: a non-2xx status on a polling
# request ("Unexpected status code 400 in server response, aborting") or a failed upgrade.
REFUSAL_LOG_RE = re.compile(r"Unexpected status code|upgrade failed|Session ID unknown", re.I)


# --------------------------------------------------------------------------------------------
# Session ids and their owner tags


def tag_of(sid: str) -> str:
    return sid[:TAG_LEN]


def node_tags(mesh) -> dict[str, str]:
    """{node name: its sid tag}, from a polling handshake on every running node of `mesh`
    (each session closed again at once). Asserts the sids have the documented shape and the
    tags differ."""
    tags = {}
    for node in mesh.running():
        p = Polling(node, roomid="tags")
        sid = p.open()
        assert SID_RE.match(sid), f"{node.name}: sid {sid!r} is not 20 characters of base64url"
        tags[node.name] = tag_of(sid)
        p.post("1")  # close it now rather than at connect_timeout
        # A second sid of the same node carries the same tag and differs elsewhere.
        q = Polling(node, roomid="tags")
        other = q.open()
        q.post("1")
        assert tag_of(other) == tags[node.name] and other != sid, (node.name, sid, other)
    assert len(set(tags.values())) == len(tags), f"two nodes share a tag: {tags}"
    return tags


def tag_for(node_name: str) -> str:
    """The tag docs/RELAY.md gives a node: 24 bits of FNV-1a (64-bit, xor-folded to 24) over
    its UTF-8 name, as 4 base64url characters. For nodes that cannot be asked (not running);
    the suites check it against the tags the running nodes hand out."""
    h = 0xcbf29ce484222325
    for b in node_name.encode():
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    bits = (h ^ (h >> 24) ^ (h >> 48)) & 0xFFFFFF
    return base64.urlsafe_b64encode(bits.to_bytes(3, "big")).decode()


def owner_of(tags: dict[str, str], sid: str) -> str | None:
    return next((n for n, t in tags.items() if t == tag_of(sid)), None)


def random_sid(tag: str) -> str:
    """`tag` followed by 16 random base64url characters (96 bits): a well-formed sid that no
    node made."""
    return tag + base64.urlsafe_b64encode(os.urandom(12)).decode()


def unused_tag(tags: dict[str, str]) -> str:
    """A 4-character base64url tag that names none of the nodes."""
    while True:
        t = base64.urlsafe_b64encode(os.urandom(3)).decode()
        if t not in tags.values():
            return t


# --------------------------------------------------------------------------------------------
# Long-polling whose requests go to a chosen node each


class Route:
    """The nodes a session's requests go to, in turn (cycled; thread-safe)."""

    def __init__(self, nodes):
        self.nodes = list(nodes)
        self._cycle = itertools.cycle(self.nodes)
        self._lock = threading.Lock()
        self.sent: list[str] = []   # node names, one per request, in order

    def next(self):
        with self._lock:
            node = next(self._cycle)
            self.sent.append(node.name)
            return node


class RoutedPolling(Polling):
    """chatmesh_testkit.Polling with the handshake on `home` (the owner) and every later
    request on the next node of `route` (a Route or a list of nodes). `fork()` gives another
    one for the same session and route with its own HTTP session, for a request made from
    another thread (a held GET). `log` has (method, node, status) of every request."""

    def __init__(self, home, route, roomid: str | None = "r1", extra: str = ""):
        super().__init__(home, roomid, extra)
        self.home = home
        self.route = route if isinstance(route, Route) else Route(route)
        self.log: list[tuple[str, str, int]] = []
        self._target = home

    def url(self, sid: bool = True, transport: str = "polling", eio: str = "4") -> str:
        # Polling.url reads self.node: point it at the node this request goes to.
        self.node = self._target
        return super().url(sid, transport, eio)

    def _pick(self):
        self._target = self.route.next() if self.sid else self.home
        return self._target

    def open(self) -> str:
        self._target = self.home
        sid = super().open()
        self.log.append(("GET", self.home.name, 200))
        return sid

    def get(self, timeout: float = WAIT) -> requests.Response:
        node = self._pick()
        r = super().get(timeout)
        self.log.append(("GET", node.name, r.status_code))
        return r

    def post(self, body, timeout: float = WAIT) -> requests.Response:
        node = self._pick()
        r = super().post(body, timeout)
        self.log.append(("POST", node.name, r.status_code))
        return r

    def fork(self) -> "RoutedPolling":
        other = RoutedPolling(self.home, self.route, self.roomid, self.extra)
        other.sid = self.sid
        other.log = self.log
        return other


def connected_session(home, route, room: str, username: str | None = None) -> RoutedPolling:
    """A polling session made on `home`, Socket.IO-connected (and joined as `username`) with
    its requests on `route`."""
    p = RoutedPolling(home, route, room)
    p.open()
    p.connect_sio()
    if username:
        p.send(join_packet(username))
        p.collect_until(lambda g: any('"event":"join"' in x and username in x for x in g))
    return p


class HeldGet:
    """A GET made from a thread (it may be held by the owner); `wait()` gives its response
    (or raises what the request raised) and how long it took."""

    def __init__(self, poll: RoutedPolling, timeout: float = WAIT):
        self.poll = poll.fork()
        self.response: requests.Response | None = None
        self.error: BaseException | None = None
        self.took: float | None = None
        self.node = None
        self._thread = threading.Thread(target=self._run, args=(timeout,), daemon=True)
        self.t0 = time.monotonic()
        self._thread.start()

    def _run(self, timeout: float) -> None:
        try:
            self.response = self.poll.get(timeout)
        except BaseException as e:  # noqa: BLE001 - handed to wait()
            self.error = e
        finally:
            self.took = time.monotonic() - self.t0

    def wait(self, timeout: float = WAIT + 2) -> requests.Response:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"the held GET did not end within {timeout}s"
        if self.error is not None:
            raise self.error
        return self.response


def engine_error(r: requests.Response) -> dict:
    """The JSON body of an Engine.IO error reply."""
    try:
        return r.json()
    except ValueError:
        raise AssertionError(f"HTTP {r.status_code} without a JSON body: {r.text[:200]!r}")


def say_packet(text: str, ack: int | None = None) -> str:
    return sio_event("say", {"text": text}, ack)


def join_packet(username: str, ack: int | None = None) -> str:
    return sio_event("join", {"username": username}, ack)


def split_payload(text: str) -> list[str]:
    return text.split(RS) if text else []


# --------------------------------------------------------------------------------------------
# Metrics


def relay_counts(node) -> dict[tuple[str, str], float]:
    """chatmesh_relay_requests_total of `node` by (kind, result)."""
    m = node.metrics()
    out = {}
    for (name, labels), v in m.samples.items():
        if name == "chatmesh_relay_requests_total":
            d = dict(labels)
            out[(d.get("kind"), d.get("result"))] = v
    return out


def relay_latency_count(node) -> float:
    """How many relayed GETs and POSTs `node` timed (chatmesh_relay_latency_seconds_count)."""
    return node.metrics().total("chatmesh_relay_latency_seconds_count")


def relay_total(node) -> float:
    return sum(relay_counts(node).values())


def counts_delta(before: dict, after: dict) -> dict:
    return {k: after.get(k, 0) - before.get(k, 0) for k in set(before) | set(after)
            if after.get(k, 0) != before.get(k, 0)}


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(p / 100 * len(s)) - 1))]


# --------------------------------------------------------------------------------------------
# Room interest across the mesh


def settle_room(members, owner_of_client, timeout: float = 10.0) -> int:
    """Waits until every node that owns a member of the room knows every other such node's
    interest in it (a SUB crosses the mesh a little after the join that caused it): one member
    per owning node says "probe-<k>" until every member has heard a probe from each of them.
    `members` are SioClients of one room; `owner_of_client(c)` names a member's node. Returns
    the probe rounds it took. Probe says start with "probe-", so tests can leave them out."""
    probers = {}
    for c in members:
        probers.setdefault(owner_of_client(c), c)
    deadline = time.monotonic() + timeout
    k = 0
    while True:
        for c in probers.values():
            c.sio.emit("say", {"text": f"probe-{k}"})
        k += 1
        round_end = min(deadline, time.monotonic() + 0.5)
        while time.monotonic() < round_end:
            if all(any(u == p.username and t.startswith("probe-") for _, u, t in c.says())
                   for c in members for p in probers.values()):
                return k
            time.sleep(0.02)
        assert time.monotonic() < deadline, \
            f"room interest never settled: probers {[p.username for p in probers.values()]}"


# --------------------------------------------------------------------------------------------
# What python-socketio clients logged, and the refusals they got


class _Sink(logging.Handler):
    def __init__(self, log: "ClientLog"):
        super().__init__(logging.INFO)
        self.log = log

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string must not break the client
            text = str(record.msg)
        with self.log.lock:
            self.log.lines.append(f"{record.levelname} {text}")


class ClientLog:
    """One logger for many python-socketio clients (socketio and engineio logging, INFO and
    up) and a requests.Session factory that records every non-2xx HTTP reply they got
    (method, URL, status, body). `client_kw()` is SioClient's `client_kw`."""

    _count = itertools.count()

    def __init__(self):
        self.lock = threading.Lock()
        self.lines: list[str] = []
        self.refusals: list[tuple[str, str, int, str]] = []
        self.logger = logging.getLogger(f"relay-clients-{next(self._count)}")
        self.logger.setLevel(logging.INFO)
        self.logger.propagate = False
        self.logger.addHandler(_Sink(self))

    def session(self) -> requests.Session:
        log = self

        class RecordingSession(requests.Session):
            def request(self, method, url, *a, **kw):
                r = super().request(method, url, *a, **kw)
                if not 200 <= r.status_code < 300:
                    with log.lock:
                        log.refusals.append((method, url, r.status_code, r.text[:300]))
                return r

        return RecordingSession()

    def client_kw(self) -> dict:
        return {"logger": self.logger, "engineio_logger": self.logger,
                "http_session": self.session}

    def refusal_lines(self) -> list[str]:
        with self.lock:
            return [ln for ln in self.lines if REFUSAL_LOG_RE.search(ln)]

    def unknown_sid(self) -> list:
        """Every sign of "Session ID unknown": log lines of refused requests, and replies."""
        with self.lock:
            replies = [r for r in self.refusals if "Session ID unknown" in r[3]]
        return self.refusal_lines() + replies


# --------------------------------------------------------------------------------------------
# nginx's access log (nginx_testkit's chatmesh_test format)

ACCESS_RE = re.compile(r'"(?P<method>[A-Z]+) (?P<uri>\S+) [^"]*" (?P<status>\d{3}) .*'
                       r'upstream=(?P<upstream>\S+)')


def access_entries(front) -> list[dict]:
    """nginx's access log as dicts: method, uri, status (int), upstream ("127.0.0.1:PORT")."""
    try:
        text = front.access_log.read_text(errors="replace")
    except OSError:
        return []
    out = []
    for line in text.splitlines():
        m = ACCESS_RE.search(line)
        if m:
            d = m.groupdict()
            d["status"] = int(d["status"])
            out.append(d)
    return out


def node_of_upstream(mesh, upstream: str) -> str | None:
    """The node whose listen address nginx names (the last one when it tried several)."""
    last = upstream.split(",")[-1].strip().split(" ")[-1]
    return next((n.name for n in mesh.nodes.values() if f"{n.host}:{n.port}" == last), None)
