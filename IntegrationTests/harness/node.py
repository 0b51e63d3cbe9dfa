"""`chatmesh serve` under test: the one node-process class of the suites and the bench."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import requests

from .process import WAIT, ChildProcess, chatmesh_binary, wait_for_healthz, wait_ready


class Metrics:
    """Prometheus text exposition, parsed into {(name, frozenset(labels)): value}."""

    LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$')
    LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')

    def __init__(self, samples: dict, types: dict, text: str):
        self.samples = samples
        self.types = types
        self.text = text

    @classmethod
    def parse(cls, text: str) -> "Metrics":
        samples, types = {}, {}
        for line in text.splitlines():
            line = line.strip()
            if not line:
                continue
            if line.startswith("#"):
                parts = line.split()
                if len(parts) >= 4 and parts[1] == "TYPE":
                    types[parts[2]] = parts[3]
                continue
            m = cls.LINE.match(line)
            assert m, f"unparseable metrics line: {line!r}"
            name, labels, value = m.groups()
            lab = frozenset(cls.LABEL.findall(labels or ""))
            samples[(name, lab)] = float(value)
        return cls(samples, types, text)

    def get(self, name: str, **labels) -> float | None:
        return self.samples.get((name, frozenset((k, str(v)) for k, v in labels.items())))

    def total(self, name: str) -> float:
        return sum(v for (n, _), v in self.samples.items() if n == name)


class NodeProcess(ChildProcess):
    """`[prefix...] chatmesh serve --config CONF [--node NAME] [--log-level L] [args...]`, its
    output in `<workdir>/<name>.<n>.log`. `host`/`port` say where its Socket.IO listener is;
    `command_prefix` and `binary` let netns_testkit run it in a network namespace from a
    private copy of the binary."""

    what = "chatmesh"

    def __init__(self, workdir: Path, conf_path: Path, name: str | None = None,
                 port: int | None = None, mesh_port: int | None = None,
                 host: str = "127.0.0.1", mesh_host: str = "127.0.0.1",
                 args: list[str] | None = None, log_name: str | None = None):
        super().__init__(workdir, log_name or name or "node")
        self.conf_path = Path(conf_path)
        self.name = name
        self.port = port
        self.mesh_port = mesh_port
        self.host = host
        self.mesh_host = mesh_host
        self.args = list(args or [])
        self.command_prefix: list[str] = []
        self.binary: Path | None = None

    # The mesh tests' name for "stopped or killed on purpose".
    @property
    def expect_dead(self) -> bool:
        return self.expect_exit

    @expect_dead.setter
    def expect_dead(self, value: bool) -> None:
        self.expect_exit = value

    @property
    def http(self) -> str:
        return f"http://{self.host}:{self.port}"

    base_url = http  # the browser helpers' name for it

    @property
    def ws(self) -> str:
        return f"ws://{self.host}:{self.port}"

    def serve_command(self) -> list[str]:
        cmd = [str(self.binary or chatmesh_binary()), "serve", "--config", str(self.conf_path)]
        if self.name:
            cmd += ["--node", self.name]
        level = os.environ.get("CHATMESH_LOG_LEVEL")
        if level:
            cmd += ["--log-level", level]
        return cmd + self.args

    def argv(self) -> list[str]:
        return [*self.command_prefix, *self.serve_command()]

    # -- lifecycle ---------------------------------------------------------------------------
    def spawn(self, conf_path: Path | None = None) -> float:
        """Starts the process without waiting; returns the monotonic time just before."""
        if conf_path is not None:
            self.conf_path = Path(conf_path)
        binary = self.binary or chatmesh_binary()
        if not binary.exists():
            raise RuntimeError(f"chatmesh binary not found at {binary} "
                               f"(run `swift build` or set CHATMESH_BIN)")
        return super().spawn()

    def wait_healthy(self, timeout: float = 20.0, interval: float = 0.02) -> dict:
        """Polls /healthz until 200; returns the body."""
        return wait_for_healthz(self.proc, self.http, f"node {self.describe()}", self.log_text,
                                timeout, interval)

    def wait_listening(self, timeout: float = 20.0) -> tuple[int, dict]:
        """Polls /healthz until it answers at all (200 or 503); returns (status, body)."""
        return wait_ready(self.proc, self.health, f"node {self.describe()}", self.log_text,
                          timeout)

    def start(self, conf_path: Path | None = None, timeout: float = 20.0) -> "NodeProcess":
        if conf_path is not None:
            self.conf_path = Path(conf_path)
        return super().start(timeout)

    def wait_started(self, timeout: float) -> None:
        self.wait_healthy(timeout)

    def describe(self) -> str:
        return f"{self.name or self.log_name} (port {self.port}, mesh {self.mesh_port})"

    def __repr__(self):
        return f"NodeProcess({self.name}, :{self.port}, mesh :{self.mesh_port})"

    # -- observability -----------------------------------------------------------------------
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

    def counter(self, name: str, **labels) -> float:
        """One sample (0 when the series does not exist yet, as for lazily made counters)."""
        m = self.metrics()
        return (m.get(name, **labels) or 0.0) if labels else m.total(name)

    metric = counter

    def peers(self) -> tuple[list, list]:
        mesh = self.healthz().get("mesh") or {}
        return sorted(mesh.get("peers_up", [])), sorted(mesh.get("peers_down", []))

    def assert_healthy(self) -> dict:
        assert self.alive(), "chatmesh process died:\n" + self.log_text(20000)
        return self.healthz()

    def wait_health(self, pred, timeout: float = 10.0) -> dict:
        """Polls /healthz until pred(body) holds; returns the body (asserts on timeout)."""
        deadline = time.monotonic() + timeout
        body = self.healthz()
        while not pred(body):
            if time.monotonic() > deadline:
                raise AssertionError(f"/healthz never satisfied the condition: {body}")
            time.sleep(0.05)
            body = self.healthz()
        return body

    # -- teardown ----------------------------------------------------------------------------
    def shutdown(self) -> list[str]:
        """Teardown: stops it; returns its name if it had died without being stopped."""
        died = self.died()
        self.stop()
        return [self.name or self.log_name] if died else []


def config_text(nodes, fanout: str | None = None, secret: str | None = None,
                cluster: dict | None = None, redis: dict | None = None,
                sections: dict | None = None, extra: str = "",
                writer: str = "IntegrationTests/harness") -> str:
    """A cluster.conf. `nodes`: objects with name, host, port, mesh_host, mesh_port (no
    `mesh =` line when mesh_port is None); `cluster`: more [cluster] keys; `redis`: the [redis]
    section; `sections`: {name: {key: value}} ([engineio], [limits], [mesh], ...), empty ones
    left out; `extra`: raw text after the sections."""
    lines = [f"# written by {writer}", "[cluster]"]
    if fanout:
        lines.append(f"fanout = {fanout}")
    if secret is not None:
        lines.append(f"secret = {secret}")
    lines += [f"{k} = {v}" for k, v in (cluster or {}).items()]
    for name, kv in [("redis", redis or {}), *(sections or {}).items()]:
        if kv:
            lines += ["", f"[{name}]"] + [f"{k} = {v}" for k, v in kv.items()]
    if extra:
        lines += ["", extra.strip()]
    for n in nodes:
        lines += ["", f"[node {n.name}]", f"listen = {n.host}:{n.port}"]
        if n.mesh_port is not None:
            lines.append(f"mesh = {n.mesh_host}:{n.mesh_port}")
    return "\n".join(lines) + "\n"
