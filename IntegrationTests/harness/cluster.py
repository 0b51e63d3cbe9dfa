"""A chatmesh cluster under test, and the one teardown of everything a test started.

    c = Cluster(fanout="mesh", nodes=3, limits={...})        # a1..a3, or nodes=["b1", "b2"]
    c.start()                                                # every node healthy, mesh linked
    alice = c.client("a1", "room")
    ...
    td = teardown(request); td.add(c)                        # stopped, logs dumped on failure
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from .clients import RecordingClient, SioClient, close_all
from .node import NodeProcess, config_text
from .process import chatmesh_binary, free_ports

FAST_LIMITS = {"say_rate": 100000, "say_burst": 100000, "outbound_buffer": 16 * 1048576}


class Cluster:
    """A cluster.conf on free loopback ports (a listen and a mesh address per node, all from
    one free_ports() call) and one NodeProcess per node. `nodes`: a count (a1..aN) or names;
    `phantoms`: listed in the config, never started. In redis mode the [redis] section is
    written when a RedisServer (`redis`) or `redis_url` is given. `tls=True` makes the mesh
    TLS: `chatmesh gen-certs` writes a CA and a certificate per node into <dir>/tls and [mesh]
    gets the lines it prints (`tls_dir` is that directory). `recovery` is the [recovery]
    section (connection-state recovery: {"enabled": "on", "max_disconnection": 3000}), left
    out when empty."""

    def __init__(self, fanout: str = "mesh", nodes=2, phantoms=(), secret: str = "mesh-test-secret",
                 cluster: dict | None = None, redis=None, redis_url: str | None = None,
                 channel_prefix: str = "", redis_extra: dict | None = None,
                 limits: dict | None = None, engineio: dict | None = None,
                 mesh: dict | None = None, prefix: str | None = None, tls: bool = False,
                 recovery: dict | None = None):
        assert fanout in ("mesh", "redis")
        self.fanout = fanout
        self.names = [f"a{i}" for i in range(1, nodes + 1)] if isinstance(nodes, int) \
            else list(nodes)
        self.phantoms = list(phantoms)
        self.secret = secret
        self.cluster_extra = dict(cluster or {})
        self.redis = redis
        self.redis_url = redis_url or (redis.url if redis else None)
        self.channel_prefix = channel_prefix
        self.redis_extra = dict(redis_extra or {})
        self.limits = dict(limits or {})
        self.engineio = dict(engineio or {})
        self.mesh = dict(mesh or {})
        self.recovery = dict(recovery or {})
        self.dir = Path(tempfile.mkdtemp(prefix=prefix or f"chatmesh-{fanout}-"))
        self.conf_path = self.dir / "cluster.conf"
        all_names = self.names + self.phantoms
        ports = free_ports(2 * len(all_names))
        self.nodes: dict[str, NodeProcess] = {
            n: NodeProcess(self.dir, self.conf_path, n, ports[2 * i], ports[2 * i + 1])
            for i, n in enumerate(all_names)}
        self.clients: list = []   # RecordingClient and SioClient, closed at teardown
        self.conf_path.write_text(self.config_text())
        self.tls_dir: Path | None = None
        if tls:
            self.tls_dir = self.dir / "tls"
            self.mesh.update(make_mesh_certs(self.conf_path, self.tls_dir))
            self.conf_path.write_text(self.config_text())

    def __getitem__(self, name) -> NodeProcess:
        return self.nodes[name]

    def running(self) -> list[NodeProcess]:
        return [n for n in self.nodes.values() if n.alive()]

    def config_text(self, secret: str | None = None) -> str:
        redis = None
        if self.redis_url:
            redis = {"url": self.redis_url}
            if self.channel_prefix:
                redis["channel_prefix"] = self.channel_prefix
            redis.update(self.redis_extra)
        return config_text(self.nodes.values(), fanout=self.fanout,
                           secret=self.secret if secret is None else secret,
                           cluster=self.cluster_extra, redis=redis,
                           sections={"engineio": self.engineio, "limits": self.limits,
                                     "mesh": self.mesh, "recovery": self.recovery})

    def write_variant(self, filename: str, **kw) -> Path:
        """The same cluster.conf with other [cluster] values (e.g. secret=...)."""
        p = self.dir / filename
        p.write_text(self.config_text(**kw))
        return p

    # -- lifecycle ---------------------------------------------------------------------------
    def spawn(self) -> None:
        for n in self.names:
            self.nodes[n].spawn()

    def start(self, timeout: float = 20.0) -> "Cluster":
        self.spawn()
        for n in self.names:
            self.nodes[n].wait_healthy(timeout)
        if self.fanout == "mesh":
            self.wait_mesh()
        return self

    def wait_mesh(self, timeout: float = 10.0, names=None) -> float:
        """Waits until every running node (of `names`) has every other one of them in
        peers_up; returns the seconds it took."""
        names = list(names or [n.name for n in self.running() if n.name in self.names])
        t0 = time.monotonic()
        deadline = t0 + timeout
        while True:
            bad = {}
            for n in names:
                up, _ = self.nodes[n].peers()
                if not {x for x in names if x != n} <= set(up):
                    bad[n] = up
            if not bad:
                return time.monotonic() - t0
            if time.monotonic() > deadline:
                raise AssertionError(f"mesh not fully up after {timeout}s: {bad}\n" +
                                     "\n".join(f"--- {n} ---\n{self.nodes[n].log_text(3000)}"
                                               for n in names))
            time.sleep(0.05)

    # -- clients -----------------------------------------------------------------------------
    def client(self, node: str, room: str, transports=("websocket",),
               connect=True) -> RecordingClient:
        return self._track(RecordingClient(self.nodes[node], room,
                                           transports=list(transports) if transports else None),
                           connect)

    def sio(self, base_url: str, room: str, username: str, connect: bool = True,
            **kw) -> SioClient:
        """A SioClient (reconnecting, re-joining) on `base_url`, closed at teardown."""
        return self._track(SioClient(base_url, room, username, **kw), connect)

    def _track(self, client, connect: bool):
        self.clients.append(client)
        return client.connect() if connect else client

    @property
    def sio_clients(self) -> list[SioClient]:
        return [c for c in self.clients if isinstance(c, SioClient)]

    def close_clients(self) -> None:
        close_all(self.clients)
        self.clients.clear()

    # -- stopping ----------------------------------------------------------------------------
    def died(self) -> list[str]:
        return [n.name for n in self.nodes.values() if n.died()]

    def stop(self) -> dict:
        """Stops every node by pid (all signalled first, then waited for); returns
        {name: (exit status, died on its own)}."""
        died = {n.name: n.died() for n in self.nodes.values()}
        for n in self.nodes.values():
            n.terminate()
        return {n.name: (n.stop(), died[n.name]) for n in self.nodes.values()}

    def shutdown(self) -> list[str]:
        """Teardown: clients closed, nodes stopped; returns the nodes that had died."""
        self.close_clients()
        return [name for name, (_, died) in self.stop().items() if died]

    def logs(self, limit: int = 6000) -> str:
        return "\n".join(f"--- {n.name} (port {n.port}, mesh {n.mesh_port}) ---\n"
                         f"{n.log_text(limit, all_generations=True)}"
                         for n in self.nodes.values() if n.generation)

    def dump_logs(self) -> str:
        return f"=== chatmesh {self.fanout} cluster logs ({self.dir}) ===\n{self.logs()}\n"

    def remove_dir(self) -> None:
        """Deletes the temp dir (configs, logs); only when nothing failed."""
        shutil.rmtree(self.dir, ignore_errors=True)


def make_mesh_certs(conf_path: Path, out_dir: Path) -> dict:
    """`chatmesh gen-certs --config CONF --out DIR`: a cluster CA and a key + certificate per
    node of CONF; returns the [mesh] keys it prints (tls, tls_ca, tls_cert, tls_key)."""
    out = subprocess.run([str(chatmesh_binary()), "gen-certs", "--config", str(conf_path),
                          "--out", str(out_dir)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, f"gen-certs failed ({out.returncode}): {out.stderr}"
    keys = {}
    for line in out.stdout.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() in ("tls", "tls_ca", "tls_cert", "tls_key"):
            keys[key.strip()] = value.strip()
    assert set(keys) == {"tls", "tls_ca", "tls_cert", "tls_key"}, out.stdout
    return keys


# --------------------------------------------------------------------------------------------
# The teardown


class Teardown:
    """Everything a test (or a module) started, in the order it was added. `finish()` stops it
    all (every client first, then the processes in reverse order: a cluster before the
    redis-server it used, nginx before the cluster behind it), dumps every log when the test
    failed or a watched process had died, deletes the temp dirs otherwise, and fails the test
    when a node died while it otherwise passed. One thing failing to stop does not keep the
    others running.

    Anything added has `shutdown() -> [names that died]`, `dump_logs() -> str` and
    `remove_dir()`."""

    def __init__(self, failed, what: str = "test"):
        self._failed = failed
        self.what = what
        self.things: list = []
        self.extra_cleanups: list = []   # run last, also when stopping failed

    def add(self, thing):
        self.things.append(thing)
        return thing

    def finish(self, failed: bool | None = None) -> None:
        failed = self._failed() if failed is None else failed
        died: list[str] = []
        errors: list[BaseException] = []
        try:
            for thing in self.things:  # first every client, so none sees its server go away
                if hasattr(thing, "close_clients"):
                    thing.close_clients()
            for thing in reversed(self.things):
                try:
                    died += thing.shutdown()
                except Exception as e:  # noqa: BLE001 - raised below, after the others
                    errors.append(e)
            if failed or died or errors:
                sys.stderr.write("\n" + "".join(t.dump_logs() for t in self.things) +
                                 "=== end ===\n")
            else:
                for thing in self.things:
                    thing.remove_dir()
        finally:
            self.things.clear()
            for cleanup in reversed(self.extra_cleanups):
                cleanup()
        if errors:
            raise errors[0]
        if died and not failed:
            pytest.fail(f"{', '.join(died)} died during the {self.what}", pytrace=False)


def teardown(request, what: str | None = None) -> Teardown:
    """A Teardown finished when `request`'s fixture ends (a test, a module or the session):
    failed means a test failed in that span."""
    failures_before = request.session.testsfailed
    td = Teardown(lambda: request.session.testsfailed > failures_before,
                  what or {"function": "test"}.get(request.scope, request.scope))
    request.addfinalizer(td.finish)
    return td


def factory(request, make, start: bool = True):
    """A pytest factory fixture's function: make(*a, start=True, **kw) builds a thing with
    `make`, adds it to the request's teardown and starts it (unless start=False)."""
    td = teardown(request)

    def build(*a, start: bool = start, **kw):
        thing = td.add(make(*a, **kw))
        return thing.start() if start else thing

    return build

