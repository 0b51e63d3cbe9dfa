"""The Redis connections themselves: AUTH with an ACL user and SELECT from the URL; a refused
AUTH keeps the node not ready and retrying; a malformed reply resets that one connection with
a clear logged reason, and the node reconnects, resubscribes and carries on, without crashing.

Malformed replies need a server that sends them: `FakeRedis` is a small RESP pub/sub server in
python (AUTH, SELECT, PING, SUBSCRIBE, UNSUBSCRIBE, PUBLISH, QUIT) whose connections the test
can make send arbitrary bytes."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from harness.process import close_quietly
from redis_testkit import (M, cluster_factory, join_msg, redis_factory, say_msg,  # noqa: F401
                           unique_room, wait_until)

PASSWORD = "fake-pw"


# --------------------------------------------------------------------------------------------
# A fake Redis


class FakeConn(threading.Thread):
    def __init__(self, server: "FakeRedis", sock: socket.socket):
        super().__init__(daemon=True)
        self.server, self.sock = server, sock
        self.commands: list[list[bytes]] = []
        self.channels: set[bytes] = set()
        self.closed = threading.Event()
        self.lock = threading.Lock()
        self.buf = b""
        self.start()

    # parsing the client's commands (arrays of bulk strings, as every client sends them)
    def _read_command(self):
        while True:
            cmd = self._parse()
            if cmd is not None:
                return cmd
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.buf += chunk

    def _parse(self):
        b = self.buf
        if not b.startswith(b"*") or b"\r\n" not in b:
            return None
        head, rest = b.split(b"\r\n", 1)
        parts = []
        for _ in range(int(head[1:])):
            if b"\r\n" not in rest:
                return None
            h, rest2 = rest.split(b"\r\n", 1)
            n = int(h[1:])
            if len(rest2) < n + 2:
                return None
            parts.append(rest2[:n])
            rest = rest2[n + 2:]
        self.buf = rest
        return parts

    def send(self, data: bytes):
        with self.lock:
            try:
                self.sock.sendall(data)
            except OSError:
                pass

    def run(self):
        try:
            while True:
                cmd = self._read_command()
                if cmd is None:
                    break
                self.commands.append(cmd)
                self.server.handle(self, cmd)
        except OSError:
            pass
        finally:
            self.closed.set()
            close_quietly(self.sock)

    def names(self) -> list[str]:
        return [c[0].decode().upper() for c in self.commands]

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def bulk(b: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(b), b)


class FakeRedis:
    def __init__(self, password: str = PASSWORD):
        self.password = password
        self.accept_auth = True
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(64)
        self.port = self.lsock.getsockname()[1]
        self.conns: list[FakeConn] = []
        self.lock = threading.Lock()
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    def _accept(self):
        while not self.stopped:
            try:
                s, _ = self.lsock.accept()
            except OSError:
                return
            with self.lock:
                self.conns.append(FakeConn(self, s))

    def stop(self):
        self.stopped = True
        self.lsock.close()
        for c in list(self.conns):
            c.close()

    def handle(self, conn: FakeConn, cmd: list[bytes]):
        name = cmd[0].upper()
        if name == b"AUTH":
            ok = self.accept_auth and cmd[-1].decode() == self.password
            conn.send(b"+OK\r\n" if ok else
                      b"-WRONGPASS invalid username-password pair or user is disabled.\r\n")
        elif name == b"SELECT":
            conn.send(b"+OK\r\n")
        elif name == b"PING":
            conn.send(b"*2\r\n$4\r\npong\r\n$0\r\n\r\n" if conn.channels else b"+PONG\r\n")
        elif name in (b"SUBSCRIBE", b"UNSUBSCRIBE"):
            for ch in cmd[1:]:
                (conn.channels.add if name == b"SUBSCRIBE" else conn.channels.discard)(ch)
                conn.send(b"*3\r\n" + bulk(name.lower()) + bulk(ch) + b":%d\r\n" % len(conn.channels))
        elif name == b"PUBLISH":
            ch, payload = cmd[1], cmd[2]
            targets = [c for c in self.live() if ch in c.channels]
            for t in targets:
                t.send(b"*3\r\n" + bulk(b"message") + bulk(ch) + bulk(payload))
            conn.send(b":%d\r\n" % len(targets))
        elif name == b"QUIT":
            conn.send(b"+OK\r\n")
            conn.close()
        else:
            conn.send(b"-ERR unknown command\r\n")

    def live(self) -> list[FakeConn]:
        with self.lock:
            return [c for c in self.conns if not c.closed.is_set()]

    def subscriber_of(self, channel: str) -> FakeConn | None:
        ch = channel.encode()
        return next((c for c in self.live() if ch in c.channels), None)

    def publisher(self) -> FakeConn | None:
        return next((c for c in self.live() if "PUBLISH" in c.names()), None)


@pytest.fixture
def fake_redis():
    f = FakeRedis()
    yield f
    f.stop()


MALFORMED = [
    (b"!bogus\r\n", "unknown RESP type byte 33"),
    (b":12x\r\n", "invalid RESP integer"),
    (b"$-5\r\n", "invalid RESP length"),
    (b"+OK\rX\r\n", "RESP value not terminated by CRLF"),
    (b"*3\r\n$7\r\nmessage\r\n$2\r\nr1\r\n$2\r\nhiXX", "RESP value not terminated by CRLF"),
    (b"$999999999999\r\n", "RESP bulk string of 999999999999 bytes exceeds"),
    (b"*99999999\r\n", "RESP array of 99999999 elements exceeds"),
    (b"*1\r\n" * 20, "RESP arrays nested deeper than"),
    (b"+" + b"x" * 70000, "RESP line longer than"),
]


def test_malformed_replies_reset_the_connection_which_is_reestablished(fake_redis,
                                                                         cluster_factory):
    cluster = cluster_factory("redis", names=("a1",), redis_url=fake_redis.url)
    node = cluster["a1"]
    room = unique_room("bad")
    alice = cluster.client("a1", room)
    # Not join(wait=True): the join's PUBLISH may overtake the SUBSCRIBE (two connections,
    # and this fake serves each on its own thread), so wait for the subscription instead.
    alice.join("alice", wait=False)
    wait_until(lambda: fake_redis.subscriber_of(room), what="SUBSCRIBE <room> at the fake")
    alice.say("ready")
    alice.wait_for(lambda evs: (M, say_msg("alice", "ready")) in evs, what="a say via the fake")
    times = []
    for i, (garbage, reason) in enumerate(MALFORMED):
        role = "subscriber" if i % 3 else "publisher"
        victim = (fake_redis.subscriber_of(room) if role == "subscriber"
                  else fake_redis.publisher())
        if victim is None:  # the publisher has not published since its last reset
            alice.say(f"wake {i}")
            alice.wait_for(lambda evs, i=i: (M, say_msg("alice", f"wake {i}")) in evs,
                           what="a say through the fake")
            victim = (fake_redis.subscriber_of(room) if role == "subscriber"
                      else fake_redis.publisher())
        errors = node.metric("chatmesh_redis_errors_total")
        t0 = time.monotonic()
        victim.send(garbage)
        assert victim.closed.wait(5), f"{role} connection not closed after {garbage[:40]!r}"
        if role == "subscriber":
            wait_until(lambda: fake_redis.subscriber_of(room) not in (None, victim),
                       timeout=6, what="a new subscriber connection with SUBSCRIBE <room>")
        wait_until(lambda: node.health()[0] == 200, timeout=6, what="ready again")
        times.append(time.monotonic() - t0)
        assert node.metric("chatmesh_redis_errors_total") == errors + 1
        log = node.log_text(200000)
        assert f"malformed reply from Redis: {reason}" in log, f"no clear reason for {reason}"
        assert node.alive()
        # The room still works: a say goes out through the (new) publisher and comes back.
        alice.say(f"after {i}")
        alice.wait_for(lambda evs, i=i: (M, say_msg("alice", f"after {i}")) in evs,
                       what=f"a say after garbage #{i}")
    resubscribes = sum(1 for c in fake_redis.conns
                       if any(cmd[0].upper() == b"SUBSCRIBE" and room.encode() in cmd[1:]
                           for cmd in c.commands))
    print(f"\n{len(MALFORMED)} malformed replies: each reset its connection with a clear "
          f"reason; ready again after {[round(t, 2) for t in times]} s; {resubscribes} "
          f"connections subscribed {room}; node alive; chatmesh_redis_errors_total "
          f"{node.metric('chatmesh_redis_errors_total'):.0f}, reconnects "
          f"{node.metric('chatmesh_redis_reconnects_total'):.0f}")
    assert alice.sio.connected
    assert [a["data"]["text"] for e, a in alice.snapshot() if a["event"] == "broadcast_say"
            if a["data"]["text"].startswith("after")] == [f"after {i}" for i in range(len(MALFORMED))]


def test_refused_auth_keeps_the_node_not_ready_and_retrying(fake_redis, cluster_factory):
    fake_redis.accept_auth = False
    cluster = cluster_factory("redis", names=("a1",), redis_url=fake_redis.url, start=False)
    cluster.spawn()
    node = cluster["a1"]
    status, body = node.wait_listening()
    time.sleep(1.5)
    status, body = node.health()
    assert status == 503 and body == {**body, "status": "not_ready", "redis": "down"}, body
    attempts = len(fake_redis.conns)
    assert attempts >= 4, f"only {attempts} connection attempts in 1.5 s"
    assert all(c.names()[:1] == ["AUTH"] for c in fake_redis.conns)
    assert "Redis refused setup: WRONGPASS" in node.log_text()
    assert node.metric("chatmesh_redis_errors_total") >= 2
    fake_redis.accept_auth = True
    t0 = time.monotonic()
    node.wait_healthy(timeout=8)
    print(f"\nrefused AUTH: 503 not_ready, {attempts} attempts in ~1.5 s, reason logged; "
          f"ready {time.monotonic() - t0:.2f}s after AUTH was accepted")


def test_acl_user_and_database_from_the_url(redis_factory, cluster_factory):
    redis = redis_factory()
    assert redis.command("ACL", "SETUSER", "chat", "on", ">chat-pw", "~*", "&*", "+@all") == "OK"
    url = f"redis://chat:chat-pw@127.0.0.1:{redis.port}/5"
    cluster = cluster_factory("redis", redis_url=url)
    room = unique_room("acl")
    a = cluster.client("a1", room)
    b = cluster.client("a2", room)
    a.join("a")
    b.join("b")
    a.wait_for(lambda evs: (M, join_msg("b")) in evs, what="b's join")
    a.say("via user chat, db 5")
    b.wait_for(lambda evs: (M, say_msg("a", "via user chat, db 5")) in evs, what="the say")
    clients = redis.command("CLIENT", "LIST").decode().splitlines()
    ours = [l for l in clients if " user=chat " in l]
    print(f"\nredis://chat:***@…/5: {len(ours)} connections as user chat: " +
          "; ".join(" ".join(f for f in l.split() if f.split("=")[0] in ("db", "user", "cmd"))
                    for l in ours))
    assert len(ours) == 4, clients  # subscriber + publisher per node
    assert all(" db=5 " in l for l in ours), ours


def test_wrong_password_then_fixed_on_the_server(redis_factory, cluster_factory):
    """A real Redis refusing the password: not ready; once the server accepts it (CONFIG SET
    requirepass), the node connects on its next attempt."""
    redis = redis_factory()
    url = f"redis://:other-pw@127.0.0.1:{redis.port}/0"
    cluster = cluster_factory("redis", names=("a1",), redis_url=url, start=False)
    cluster.spawn()
    node = cluster["a1"]
    node.wait_listening()
    time.sleep(1.0)
    status, body = node.health()
    assert status == 503 and body["redis"] == "down", body
    assert "WRONGPASS" in node.log_text()
    redis.command("CONFIG", "SET", "requirepass", "other-pw")
    redis.password = "other-pw"
    t0 = time.monotonic()
    node.wait_healthy(timeout=8)
    print(f"\nWRONGPASS from redis-server: 503 not_ready; ready {time.monotonic() - t0:.2f}s "
          f"after CONFIG SET requirepass")
