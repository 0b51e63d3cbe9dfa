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

TLS: `RedisTLSFiles(dir)` makes a test CA and a server and a client certificate with the openssl
CLI; `RedisServer(tls=files)` serves only TLS (`--tls-port`, `--port 0`) and its `url` is
`rediss://`; `tls_auth_clients=True` makes it require a client certificate.
RedisServer is a harness ChildProcess, ChatCluster a harness Cluster (IntegrationTests/harness).
"""

from __future__ import annotations

import os
import shutil
import socket
import ssl
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
    def __init__(self, port: int, password: str | None = REDIS_PASSWORD, timeout: float = WAIT,
                 tls: ssl.SSLContext | None = None):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        if tls is not None:
            self.sock = tls.wrap_socket(self.sock, server_hostname="127.0.0.1")
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
# TLS files for redis-server (openssl CLI)


def openssl(*args: str) -> None:
    out = subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, f"openssl {' '.join(args)} failed: {out.stderr}"


class RedisTLSFiles:
    """A test CA (`ca`, `ca_key`), a server certificate it signed (`server_cert`,
    `server_key`; subjectAltName `server_sans`, by default IP:127.0.0.1 and DNS:localhost) and a
    client certificate (`client_cert`, `client_key`), all ECDSA P-256 PEM files in `dir`, keys
    mode 0600. Two instances are two unrelated CAs."""

    def __init__(self, dir: Path, server_sans=("IP:127.0.0.1", "DNS:localhost"),
                 name: str = "redis test CA"):
        self.dir = Path(dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.server_sans = tuple(server_sans)
        self.ca, self.ca_key = str(self.dir / "ca.pem"), self._key("ca")
        openssl("req", "-x509", "-new", "-key", self.ca_key, "-out", self.ca, "-days", "30",
                "-subj", f"/CN={name}", "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        self.server_cert, self.server_key = self._signed(
            "server", "redis", ",".join(server_sans), "serverAuth")
        self.client_cert, self.client_key = self._signed(
            "client", "chatmesh", "DNS:chatmesh-client", "clientAuth")

    def _key(self, name: str) -> str:
        key = str(self.dir / f"{name}-key.pem")
        openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                "-out", key)
        os.chmod(key, 0o600)
        return key

    def _signed(self, name: str, cn: str, sans: str, usage: str) -> tuple[str, str]:
        key, cert = self._key(name), str(self.dir / f"{name}.pem")
        csr, ext = self.dir / f"{name}.csr", self.dir / f"{name}.ext"
        ext.write_text(f"subjectAltName = {sans}\nextendedKeyUsage = {usage}\n"
                       "basicConstraints = critical,CA:FALSE\n"
                       "keyUsage = critical,digitalSignature\n")
        openssl("req", "-new", "-key", key, "-out", str(csr), "-subj", f"/CN={cn}")
        openssl("x509", "-req", "-in", str(csr), "-CA", self.ca, "-CAkey", self.ca_key,
                "-CAcreateserial", "-out", cert, "-days", "30", "-extfile", str(ext))
        return cert, key

    def client_context(self, with_certificate: bool = True) -> ssl.SSLContext:
        """A python TLS client context trusting this CA (and presenting the client
        certificate), for the test's own RESP connections."""
        ctx = ssl.create_default_context(cafile=self.ca)
        # The test connects to 127.0.0.1; a certificate made for another name is still this CA's.
        ctx.check_hostname = "IP:127.0.0.1" in self.server_sans
        if with_certificate:
            ctx.load_cert_chain(self.client_cert, self.client_key)
        return ctx

    def redis_keys(self, client_certificate: bool = False) -> dict:
        """The [redis] lines a node needs to trust this CA (and present the client
        certificate)."""
        keys = {"tls_ca": self.ca}
        if client_certificate:
            keys.update(tls_cert=self.client_cert, tls_key=self.client_key)
        return keys


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
    `start()` again keep the port and the password (a restart). With `tls` (RedisTLSFiles) the
    port is a TLS port (--tls-port; no plaintext port), requiring a client certificate when
    `tls_auth_clients`."""

    what = "redis-server"

    def __init__(self, password: str = REDIS_PASSWORD, port: int | None = None,
                 tls: RedisTLSFiles | None = None, tls_auth_clients: bool = False):
        super().__init__(Path(tempfile.mkdtemp(prefix="chatmesh-redis-")), "redis")
        self.password = password
        self.port = port or free_ports(1)[0]
        self.tls = tls
        self.tls_auth_clients = tls_auth_clients

    @property
    def dir(self) -> Path:
        return self.workdir

    @property
    def url(self) -> str:
        scheme = "rediss" if self.tls else "redis"
        return f"{scheme}://:{self.password}@127.0.0.1:{self.port}/0"

    def argv(self) -> list[str]:
        if self.tls:
            ports = ["--port", "0", "--tls-port", str(self.port),
                     "--tls-cert-file", self.tls.server_cert, "--tls-key-file", self.tls.server_key,
                     "--tls-ca-cert-file", self.tls.ca,
                     "--tls-auth-clients", "yes" if self.tls_auth_clients else "no"]
        else:
            ports = ["--port", str(self.port)]
        return [redis_server_binary(), *ports, "--bind", "127.0.0.1",
                "--requirepass", self.password, "--save", "", "--appendonly", "no",
                "--daemonize", "no", "--dir", str(self.dir), "--logfile", "",
                "--protected-mode", "yes", "--databases", "16"]

    def start(self, timeout: float = 10.0) -> "RedisServer":
        return super().start(timeout)

    def wait_started(self, timeout: float) -> None:
        def pong():
            try:
                with RespClient(self.port, self.password, timeout=1, tls=self._tls_context()) as c:
                    return c.command("PING") == "PONG"
            except RespError as e:
                return str(e)

        wait_ready(self.proc, pong, "redis-server", self.log_text, timeout)

    def describe(self) -> str:
        return f"(port {self.port})"

    def log_text(self, limit: int = 6000, all_generations: bool = True) -> str:
        return super().log_text(limit, all_generations)

    def _tls_context(self) -> ssl.SSLContext | None:
        return self.tls.client_context() if self.tls else None

    def client(self) -> RespClient:
        return RespClient(self.port, self.password, tls=self._tls_context())

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
                               *self._cli_tls(), *args], env=env, capture_output=True,
                              timeout=timeout)

    def _cli_tls(self) -> list[str]:
        if not self.tls:
            return []
        return ["--tls", "--cacert", self.tls.ca, "--cert", self.tls.client_cert,
                "--key", self.tls.client_key]

    def cli_popen(self, *args) -> subprocess.Popen:
        """A long-running redis-cli (e.g. SUBSCRIBE), authenticated with -a."""
        return subprocess.Popen([redis_cli_binary(), "-h", "127.0.0.1", "-p", str(self.port),
                                 *self._cli_tls(), "-a", self.password, "--no-auth-warning", *args],
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
    RedisServer / ChatCluster (keyword arguments go to its constructor), all stopped when the
    module ends."""
    td = teardown(request)
    return (lambda **kw: td.add(RedisServer(**kw)).start(),
            lambda fanout, **kw: td.add(ChatCluster(fanout, **kw)).start())
