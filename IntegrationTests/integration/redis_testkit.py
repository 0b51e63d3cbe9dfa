"""Helpers for the Redis-fanout tests: a real `redis-server` started by the test, a tiny RESP
client, and a 2-node chatmesh cluster whose cluster.conf differs between modes only in the
`fanout =` line.

    from redis_testkit import redis_server, cluster_factory  # noqa: F401  (the fixtures)

    def test_x(redis_server, cluster_factory):
        c = cluster_factory("redis", redis=redis_server)
        alice = c.client("a1", "room")
        ...

Every process (redis-server, chatmesh nodes) is started on free loopback ports and stopped by
pid (SIGTERM, SIGKILL after 5 s), also when the test fails; node logs are printed on failure.
Reuses `RecordingClient`, `Metrics` and the message builders of chatmesh_testkit.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
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
                              join_msg, quit_msg, say_msg)

REDIS_PASSWORD = "t3st-Pa55"
# Generous limits for tests that send many says (the defaults are 20/s, burst 40).
FAST_LIMITS = {"say_rate": 100000, "say_burst": 100000, "outbound_buffer": 16 * 1048576}
M = "message"


def _stop_pid(proc: subprocess.Popen | None, sig=signal.SIGTERM, timeout: float = 5.0):
    if proc is None or proc.poll() is not None:
        return None if proc is None else proc.returncode
    try:
        os.kill(proc.pid, sig)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.kill(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=5)
    return proc.returncode


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
        try:
            self.sock.close()
        except OSError:
            pass

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


class RedisServer:
    """One redis-server on a free loopback port with requirepass, no persistence. `stop()` and
    `start()` again keep the port and the password (a restart)."""

    def __init__(self, password: str = REDIS_PASSWORD, port: int | None = None):
        self.password = password
        self.port = port or free_ports(1)[0]
        self.dir = Path(tempfile.mkdtemp(prefix="chatmesh-redis-"))
        self.proc: subprocess.Popen | None = None
        self.generation = 0
        self._log = None

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    @property
    def log_path(self) -> Path:
        return self.dir / f"redis.{self.generation}.log"

    def start(self, timeout: float = 10.0) -> "RedisServer":
        self.generation += 1
        self._log = open(self.log_path, "wb")
        cmd = [redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1",
               "--requirepass", self.password, "--save", "", "--appendonly", "no",
               "--daemonize", "no", "--dir", str(self.dir), "--logfile", "",
               "--protected-mode", "yes", "--databases", "16"]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, cwd=self.dir)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}:\n"
                                   f"{self.log_text()}")
            try:
                with RespClient(self.port, self.password, timeout=1) as c:
                    if c.command("PING") == "PONG":
                        return self
            except (OSError, ConnectionError, RespError):
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server not answering within {timeout}s:\n"
                                   f"{self.log_text()}")
            time.sleep(0.02)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM) -> int | None:
        rc = _stop_pid(self.proc, sig)
        if self._log is not None:
            self._log.close()
            self._log = None
        return rc

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

    def log_text(self, limit: int = 6000) -> str:
        text = ""
        for g in range(1, self.generation + 1):
            try:
                text += (self.dir / f"redis.{g}.log").read_bytes().decode("utf-8", "replace")
            except OSError:
                pass
        return text if len(text) <= limit else "...(cut)...\n" + text[-limit:]


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
        deadline = time.monotonic() + timeout
        with self.cond:
            while len(self.lines) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"redis-cli printed {len(self.lines)} of {n} lines: "
                                         f"{self.lines}")
                self.cond.wait(left)
            return list(self.lines)

    def snapshot(self) -> list[bytes]:
        with self.cond:
            return list(self.lines)


def stop_process(proc: subprocess.Popen | None):
    """Stops a helper subprocess (redis-cli) by pid."""
    _stop_pid(proc, signal.SIGTERM, timeout=3)


# --------------------------------------------------------------------------------------------
# chatmesh nodes and a cluster in either fanout mode


class ClusterNode:
    def __init__(self, cluster: "ChatCluster", name: str, port: int, mesh_port: int):
        self.cluster = cluster
        self.name = name
        self.port = port
        self.mesh_port = mesh_port
        self.proc: subprocess.Popen | None = None
        self.generation = 0
        self._log = None

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.cluster.dir / f"{self.name}.{self.generation}.log"

    def spawn(self):
        binary = chatmesh_binary()
        if not binary.exists():
            raise RuntimeError(f"chatmesh binary not found at {binary} (set CHATMESH_BIN)")
        self.generation += 1
        self._log = open(self.log_path, "wb")
        cmd = [str(binary), "serve", "--config", str(self.cluster.conf_path), "--node", self.name]
        level = os.environ.get("CHATMESH_LOG_LEVEL")
        if level:
            cmd += ["--log-level", level]
        for attempt in range(100):
            try:
                self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self._log,
                                             stderr=subprocess.STDOUT, cwd=self.cluster.dir)
                break
            except OSError as e:  # ETXTBSY: a concurrent build is rewriting the binary
                if e.errno != 26 or attempt == 99:
                    raise
                time.sleep(0.1)

    def wait_healthy(self, timeout: float = 20.0) -> dict:
        """Polls /healthz until 200; returns the body."""
        return wait_for_healthz(self.proc, self.http, f"node {self.name}", self.log_text, timeout)

    def wait_listening(self, timeout: float = 20.0) -> tuple[int, dict]:
        """Polls /healthz until it answers at all (200 or 503); returns (status, body)."""
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"node {self.name} exited with {self.proc.returncode}\n"
                                   f"{self.log_text()}")
            try:
                return self.health()
            except requests.RequestException:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.02)

    def health(self) -> tuple[int, dict]:
        r = requests.get(self.http + "/healthz", timeout=WAIT)
        return r.status_code, r.json()

    def healthz(self) -> dict:
        status, body = self.health()
        assert status == 200, (self.name, status, body)
        return body

    def metrics(self) -> Metrics:
        r = requests.get(self.http + "/metrics", timeout=WAIT)
        assert r.status_code == 200, (self.name, r.status_code, r.text)
        return Metrics.parse(r.text)

    def metric(self, name: str, **labels) -> float:
        """One sample, 0 when the series does not exist (yet)."""
        m = self.metrics()
        return (m.get(name, **labels) or 0.0) if labels else m.total(name)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> int | None:
        rc = _stop_pid(self.proc)
        if self._log is not None:
            self._log.close()
            self._log = None
        return rc

    def log_text(self, limit: int = 12000) -> str:
        text = ""
        for g in range(1, self.generation + 1):
            try:
                text += (self.cluster.dir / f"{self.name}.{g}.log").read_bytes().decode(
                    "utf-8", "replace")
            except OSError:
                pass
        return text if len(text) <= limit else "...(cut)...\n" + text[-limit:]

    def __repr__(self):
        return f"ClusterNode({self.name}, :{self.port})"


class ChatCluster:
    """A cluster.conf listing `names` (each with a listen and a mesh address) whose only
    mode-dependent line is `fanout = mesh|redis`; the [redis] section is written whenever a
    RedisServer (or a redis URL) is given, and is simply unused in mesh mode."""

    def __init__(self, fanout: str, names=("a1", "a2"), redis: RedisServer | None = None,
                 redis_url: str | None = None, channel_prefix: str = "", limits=None,
                 redis_extra=None, engineio=None, mesh=None):
        assert fanout in ("mesh", "redis")
        self.fanout = fanout
        self.redis = redis
        self.redis_url = redis_url or (redis.url if redis else None)
        self.channel_prefix = channel_prefix
        self.limits = dict(FAST_LIMITS if limits is None else limits)
        self.redis_extra = dict(redis_extra or {})
        self.engineio = dict(engineio or {})
        self.mesh = dict(mesh or {})
        self.dir = Path(tempfile.mkdtemp(prefix=f"chatmesh-{fanout}-"))
        self.conf_path = self.dir / "cluster.conf"
        ports = free_ports(2 * len(names))
        self.nodes = {n: ClusterNode(self, n, ports[2 * i], ports[2 * i + 1])
                      for i, n in enumerate(names)}
        self.clients: list[RecordingClient] = []
        self.conf_path.write_text(self.config_text())

    def __getitem__(self, name) -> ClusterNode:
        return self.nodes[name]

    def config_text(self) -> str:
        lines = ["# written by IntegrationTests/integration/redis_testkit.py", "[cluster]",
                 f"fanout = {self.fanout}", "secret = fanout-test-secret"]
        if self.redis_url:
            lines += ["", "[redis]", f"url = {self.redis_url}"]
            if self.channel_prefix:
                lines.append(f"channel_prefix = {self.channel_prefix}")
            lines += [f"{k} = {v}" for k, v in self.redis_extra.items()]
        for section, kv in (("engineio", self.engineio), ("limits", self.limits),
                            ("mesh", self.mesh)):
            if kv:
                lines += ["", f"[{section}]"] + [f"{k} = {v}" for k, v in kv.items()]
        for n in self.nodes.values():
            lines += ["", f"[node {n.name}]", f"listen = 127.0.0.1:{n.port}",
                      f"mesh = 127.0.0.1:{n.mesh_port}"]
        return "\n".join(lines) + "\n"

    def spawn(self):
        for n in self.nodes.values():
            n.spawn()

    def start(self, timeout: float = 20.0) -> "ChatCluster":
        self.spawn()
        for n in self.nodes.values():
            n.wait_healthy(timeout)
        if self.fanout == "mesh":
            self.wait_mesh()
        return self

    def wait_mesh(self, timeout: float = 10.0):
        names = list(self.nodes)

        def linked():
            for n in names:
                up = self.nodes[n].healthz().get("mesh", {}).get("peers_up", [])
                if not {x for x in names if x != n} <= set(up):
                    return False
            return True

        wait_until(linked, timeout=timeout, what="every mesh link up")

    def client(self, node: str, room: str, transports=("websocket",),
               connect=True) -> RecordingClient:
        c = RecordingClient(self.nodes[node], room,
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

    def died(self) -> list[str]:
        return [n.name for n in self.nodes.values()
                if n.proc is not None and n.proc.poll() is not None]

    def stop(self):
        for n in self.nodes.values():
            if n.alive():
                try:
                    os.kill(n.proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for n in self.nodes.values():
            n.stop()

    def logs(self, limit: int = 6000) -> str:
        return "\n".join(f"--- {n.name} (port {n.port}) ---\n{n.log_text(limit)}"
                         for n in self.nodes.values() if n.generation)


# --------------------------------------------------------------------------------------------
# Messages


def says(client: RecordingClient, usernames=None) -> list[tuple[str, str]]:
    """(username, text) of every broadcast_say received, in order."""
    out = []
    for e, a in client.snapshot():
        if e == M and isinstance(a, dict) and a.get("event") == "broadcast_say":
            d = a.get("data", {})
            if usernames is None or d.get("username") in usernames:
                out.append((d.get("username"), d.get("text")))
    return out


def numbered(client: RecordingClient, sender: str) -> list[int]:
    """The n of every say "<sender>:<n>" from sender, in arrival order."""
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


# --------------------------------------------------------------------------------------------
# Fixtures


def _failed(request) -> bool:
    return any(getattr(getattr(request.node, "rep_" + w, None), "failed", False)
               for w in ("setup", "call"))


@pytest.fixture
def redis_factory(request):
    """redis_factory(port=None, start=True) -> RedisServer; all stopped by pid at teardown."""
    made: list[RedisServer] = []

    def make(port: int | None = None, start: bool = True) -> RedisServer:
        r = RedisServer(port=port)
        made.append(r)
        if start:
            r.start()
        return r

    yield make
    for r in made:
        r.stop()
        if _failed(request):
            sys.stderr.write(f"\n=== redis-server log (port {r.port}) ===\n{r.log_text()}\n")


@pytest.fixture
def redis_server(redis_factory) -> RedisServer:
    return redis_factory()


@pytest.fixture
def cluster_factory(request):
    """cluster_factory(fanout, redis=..., start=True, **kw) -> ChatCluster. Clients closed and
    nodes stopped by pid at teardown; logs printed when the test failed; a node that died
    during the test fails it."""
    made: list[ChatCluster] = []

    def make(fanout: str, start: bool = True, **kw) -> ChatCluster:
        c = ChatCluster(fanout, **kw)
        made.append(c)
        if start:
            c.start()
        return c

    yield make
    _teardown_clusters(request, made, _failed(request))


def _teardown_clusters(request, clusters, failed: bool):
    died = []
    for c in clusters:
        c.close_clients()
        died += c.died()
        c.stop()
        if failed or died:
            sys.stderr.write(f"\n=== chatmesh logs ({c.dir}) ===\n{c.logs()}\n=== end ===\n")
    if died and not failed:
        pytest.fail(f"node(s) {died} died during the test", pytrace=False)


def module_resources(request):
    """For module-scoped fixtures: (redis_factory-like make, cluster make), all stopped by
    the module finalizer."""
    servers: list[RedisServer] = []
    clusters: list[ChatCluster] = []
    failures_before = request.session.testsfailed

    def make_redis() -> RedisServer:
        r = RedisServer()
        servers.append(r)
        return r.start()

    def make_cluster(fanout: str, **kw) -> ChatCluster:
        c = ChatCluster(fanout, **kw)
        clusters.append(c)
        return c.start()

    def fin():
        failed = request.session.testsfailed > failures_before
        died = []
        for c in clusters:
            c.close_clients()
            died += c.died()
            c.stop()
            if failed or died:
                sys.stderr.write(f"\n=== chatmesh logs ({c.dir}) ===\n{c.logs()}\n=== end ===\n")
        for r in servers:
            r.stop()
        assert not died, f"node(s) {died} died during the module"

    request.addfinalizer(fin)
    return make_redis, make_cluster
