"""Helpers for the Redis-fanout tests: a real `redis-server` started by the test, a tiny RESP
client, and a 2-node chatmesh cluster whose cluster.conf differs between modes only in the
`fanout =` line.

    from redis_testkit import redis_server, cluster_factory  # noqa: F401  (the fixtures)

    def test_x(redis_server, cluster_factory):
        c = cluster_factory("redis", redis=redis_server)
        alice = c.client("a1", "room")
        ...

Every process (redis-server, chatmesh nodes) is started on free loopback ports and stopped by
pid (SIGTERM, SIGKILL after 5 s), also when the test fails; logs are printed on failure.
RedisServer is a harness ChildProcess, ChatCluster a harness Cluster (IntegrationTests/harness).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import threading
from pathlib import Path

import pytest

from chatmesh_testkit import (WAIT, Metrics, RecordingClient, chatmesh_binary,  # noqa: F401
                              free_ports, unique_room, wait_for_healthz, wait_until,
                              join_msg, quit_msg, say_msg)
from harness.clients import numbered, order_report, says  # noqa: F401
from harness.cluster import FAST_LIMITS, Cluster, factory, teardown
from harness.node import NodeProcess
from harness.process import (ChildProcess, close_quietly, stop_process,  # noqa: F401
                             wait_on, wait_ready)

REDIS_PASSWORD = "t3st-Pa55"
M = "message"


# --------------------------------------------------------------------------------------------
# A minimal RESP2 client (for PUBLISH / PUBSUB from the test, independent of chatmesh)


class RespError(Exception):
    pass


class RespClient:
    def __init__(self, port: int, password: str | None = REDIS_PASSWORD, timeout: float = WAIT):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""
        if password is not None:
            assert self.command("AUTH", password) == "OK"

    def close(self):
        close_quietly(self.sock)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, *args):
        out = b"*%d\r\n" % len(args)
        for a in args:
            b = a if isinstance(a, bytes) else str(a).encode()
            out += b"$%d\r\n%s\r\n" % (len(b), b)
        self.sock.sendall(out)

    def command(self, *args):
        self.send(*args)
        reply = self.read()
        if isinstance(reply, RespError):
            raise reply
        return reply

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("redis closed the connection")
        self.buf += chunk

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def read(self):
        line = self._line()
        t, rest = line[:1], line[1:]
        if t == b"+":
            return rest.decode()
        if t == b"-":
            return RespError(rest.decode())
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            if n < 0:
                return None
            while len(self.buf) < n + 2:
                self._fill()
            data, self.buf = self.buf[:n], self.buf[n + 2:]
            return data
        if t == b"*":
            n = int(rest)
            return None if n < 0 else [self.read() for _ in range(n)]
        raise ValueError(f"bad RESP line {line!r}")


# --------------------------------------------------------------------------------------------
# redis-server


def redis_server_binary() -> str:
    path = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not os.path.exists(path):
        pytest.skip("redis-server is not installed")
    return path


def redis_cli_binary() -> str:
    path = shutil.which("redis-cli") or "/usr/bin/redis-cli"
    if not os.path.exists(path):
        pytest.skip("redis-cli is not installed")
    return path


class RedisServer(ChildProcess):
    """One redis-server on a free loopback port with requirepass, no persistence. `stop()` and
    `start()` again keep the port and the password (a restart)."""

    what = "redis-server"

    def __init__(self, password: str = REDIS_PASSWORD, port: int | None = None):
        super().__init__(Path(tempfile.mkdtemp(prefix="chatmesh-redis-")), "redis")
        self.password = password
        self.port = port or free_ports(1)[0]

    @property
    def dir(self) -> Path:
        return self.workdir

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    def argv(self) -> list[str]:
        return [redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1",
                "--requirepass", self.password, "--save", "", "--appendonly", "no",
                "--daemonize", "no", "--dir", str(self.dir), "--logfile", "",
                "--protected-mode", "yes", "--databases", "16"]

    def start(self, timeout: float = 10.0) -> "RedisServer":
        return super().start(timeout)

    def wait_started(self, timeout: float) -> None:
        def pong():
            try:
                with RespClient(self.port, self.password, timeout=1) as c:
                    return c.command("PING") == "PONG"
            except RespError as e:
                return str(e)

        wait_ready(self.proc, pong, "redis-server", self.log_text, timeout)

    def describe(self) -> str:
        return f"(port {self.port})"

    def log_text(self, limit: int = 6000, all_generations: bool = True) -> str:
        return super().log_text(limit, all_generations)

    def client(self) -> RespClient:
        return RespClient(self.port, self.password)

    def command(self, *args):
        with self.client() as c:
            return c.command(*args)

    def numsub(self, channel: str) -> int:
        reply = self.command("PUBSUB", "NUMSUB", channel)
        return int(reply[1])

    def channels(self, pattern: str = "*") -> set[str]:
        return {c.decode() for c in self.command("PUBSUB", "CHANNELS", pattern)}

    def publish(self, channel: str, payload) -> int:
        return self.command("PUBLISH", channel, payload)

    def cli(self, *args, timeout: float = WAIT) -> subprocess.CompletedProcess:
        """redis-cli against this server (password from the environment, no warning)."""
        env = dict(os.environ, REDISCLI_AUTH=self.password)
        return subprocess.run([redis_cli_binary(), "-h", "127.0.0.1", "-p", str(self.port),
                               *args], env=env, capture_output=True, timeout=timeout)

    def cli_popen(self, *args) -> subprocess.Popen:
        """A long-running redis-cli (e.g. SUBSCRIBE), authenticated with -a."""
        return subprocess.Popen([redis_cli_binary(), "-h", "127.0.0.1", "-p", str(self.port),
                                 "-a", self.password, "--no-auth-warning", *args],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)


class LineReader(threading.Thread):
    """Collects the stdout lines of a subprocess (e.g. `redis-cli SUBSCRIBE`) as they come."""

    def __init__(self, proc: subprocess.Popen):
        super().__init__(daemon=True)
        self.proc = proc
        self.lines: list[bytes] = []
        self.cond = threading.Condition()
        self.start()

    def run(self):
        for line in iter(self.proc.stdout.readline, b""):
            with self.cond:
                self.lines.append(line.rstrip(b"\n"))
                self.cond.notify_all()

    def wait_lines(self, n: int, timeout: float = WAIT) -> list[bytes]:
        return wait_on(self.cond, lambda: len(self.lines) >= n, timeout,
                       lambda: f"redis-cli printed {len(self.lines)} of {n} lines: {self.lines}",
                       result=lambda: list(self.lines))

    def snapshot(self) -> list[bytes]:
        with self.cond:
            return list(self.lines)


# --------------------------------------------------------------------------------------------
# chatmesh nodes and a cluster in either fanout mode (harness.cluster)

ClusterNode = NodeProcess


class ChatCluster(Cluster):
    """A cluster.conf listing `names` (each with a listen and a mesh address) whose only
    mode-dependent line is `fanout = mesh|redis`; the [redis] section is written whenever a
    RedisServer (or a redis URL) is given, and is simply unused in mesh mode."""

    def __init__(self, fanout: str, names=("a1", "a2"), limits=None, **kw):
        super().__init__(fanout, nodes=names, secret="fanout-test-secret",
                         limits=FAST_LIMITS if limits is None else limits, **kw)


# --------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture
def redis_factory(request):
    """redis_factory(port=None, start=True) -> RedisServer; all stopped by pid at teardown
    (their logs printed when the test failed)."""
    return factory(request, RedisServer)


@pytest.fixture
def redis_server(redis_factory) -> RedisServer:
    return redis_factory()


@pytest.fixture
def cluster_factory(request):
    """cluster_factory(fanout, redis=..., start=True, **kw) -> ChatCluster. Clients closed and
    nodes stopped by pid at teardown; logs printed when the test failed; a node that died
    during the test fails it."""
    return factory(request, ChatCluster)


def module_resources(request):
    """For module-scoped fixtures: (make_redis, make_cluster), each returning a started
    RedisServer / ChatCluster, all stopped when the module ends."""
    td = teardown(request)
    return (lambda: td.add(RedisServer()).start(),
            lambda fanout, **kw: td.add(ChatCluster(fanout, **kw)).start())
