"""Helpers for the nginx front tests: a real (Debian) nginx running the config that
`chatmesh nginx-conf` generates, in front of a mesh of `chatmesh serve` processes.

    front = NginxFront(cluster.conf_path, workdir).start()   # nginx -t, then nginx (no daemon)
    front.http                                               # http://127.0.0.1:PORT
    front.stop()                                             # SIGQUIT, SIGKILL; by pid

nginx runs as a child process (`daemon off`), with every path it writes (pid, logs, temp
dirs) inside the work dir, on a free loopback port. Its master and worker pids are signalled
by pid only, also when a test fails.

Also here: `DrainMesh` (the MeshCluster, whose `cluster=` takes extra [cluster] keys such
as `drain_timeout`), `which_node`, `start_fronted_mesh` and the pytest fixture `nginx_mesh`.
NginxFront is a harness ChildProcess; `SioClient` (an application-like client that re-joins
after a reconnect) comes from harness.clients.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from chatmesh_testkit import WAIT, chatmesh_binary  # noqa: E402
from harness.clients import SioClient, close_all  # noqa: E402,F401 (re-exported)
from harness.cluster import teardown  # noqa: E402
from harness.process import (ChildProcess, children_of, free_port, reap,  # noqa: E402
                             signal_pid, wait_port)
from mesh_testkit import FAST_LIMITS, MeshCluster, unique_room, wait_until  # noqa: E402,F401

NGINX_BIN = os.environ.get("NGINX_BIN", "/usr/sbin/nginx")


def nginx_available() -> bool:
    return os.access(NGINX_BIN, os.X_OK)


class NginxFront(ChildProcess):
    """nginx with `chatmesh nginx-conf --config CONF --listen 127.0.0.1:PORT` included in its
    http context. Stopped with SIGQUIT (graceful; workers give up after
    worker_shutdown_timeout), then SIGKILL to the master and its workers, by pid."""

    what = "nginx"
    stop_signal = signal.SIGQUIT
    stop_timeout = 4.0

    def __init__(self, cluster_conf: Path, workdir: Path, tls: tuple[Path, Path] | None = None,
                 balance: str | None = None):
        """`tls`: (certificate, key) for `nginx-conf --tls-cert/--tls-key`: an HTTPS front.
        `balance`: `nginx-conf --balance` (round-robin or ip_hash); None leaves the option
        out, so the command's default applies."""
        self.cluster_conf = Path(cluster_conf)
        self.tls = tls
        self.balance = balance
        self.dir = Path(workdir) / "nginx"
        self.dir.mkdir(parents=True, exist_ok=True)
        super().__init__(self.dir, "stdout")
        # nginx workers run as an unprivileged user when the master is root: they must be able
        # to reach their temp dirs under the (0700) test dir.
        for p in (Path(workdir), self.dir):
            try:
                os.chmod(p, 0o755)
            except OSError:
                pass
        self.port = free_port()
        self.generated = self.dir / "chatmesh-front.conf"
        self.conf = self.dir / "nginx.conf"
        self.error_log = self.dir / "error.log"
        self.access_log = self.dir / "access.log"
        self.pid_file = self.dir / "nginx.pid"

    @property
    def http(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    base_url = http

    # -- config ------------------------------------------------------------------------------
    def generate(self) -> str:
        """Runs `chatmesh nginx-conf` and writes the included file and the top-level config."""
        tls = ["--tls-cert", str(self.tls[0]), "--tls-key", str(self.tls[1])] if self.tls else []
        balance = ["--balance", self.balance] if self.balance else []
        r = subprocess.run([str(chatmesh_binary()), "nginx-conf", "--config", str(self.cluster_conf),
                            "--listen", f"127.0.0.1:{self.port}", *tls, *balance],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, f"nginx-conf exited {r.returncode}: {r.stderr}"
        self.generated.write_text(r.stdout)
        d = self.dir
        self.conf.write_text(f"""# written by IntegrationTests/integration/nginx_testkit.py
worker_processes 1;
error_log {self.error_log} info;
pid {self.pid_file};
worker_shutdown_timeout 1s;
events {{
    worker_connections 1024;
}}
http {{
    # the combined format plus when the request ended, how long it took, and which node
    log_format chatmesh_test '$remote_addr [$time_local] $msec "$request" $status '
                             '$body_bytes_sent rt=$request_time upstream=$upstream_addr '
                             'us=$upstream_status';
    access_log {self.access_log} chatmesh_test;
    client_body_temp_path {d}/client_body_temp;
    proxy_temp_path {d}/proxy_temp;
    fastcgi_temp_path {d}/fastcgi_temp;
    uwsgi_temp_path {d}/uwsgi_temp;
    scgi_temp_path {d}/scgi_temp;
    include {self.generated};
}}
""")
        return r.stdout

    def _cmd(self, *extra: str) -> list[str]:
        return [NGINX_BIN, "-e", str(self.error_log), "-c", str(self.conf), "-p", str(self.dir),
                *extra]

    def test_config(self) -> subprocess.CompletedProcess:
        """`nginx -t` on the top-level config (which includes the generated file)."""
        return subprocess.run(self._cmd("-t", "-g", "daemon off;"), capture_output=True,
                              text=True, timeout=30)

    def argv(self) -> list[str]:
        return self._cmd("-g", "daemon off;")

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self, timeout: float = 10.0) -> "NginxFront":
        if not self.generated.exists():
            self.generate()
        t = self.test_config()
        assert t.returncode == 0, f"nginx -t failed ({t.returncode}):\n{t.stderr}"
        return super().start(timeout)

    def wait_started(self, timeout: float) -> None:
        wait_port(self.proc, "127.0.0.1", self.port, "nginx", self.logs, timeout)

    def also_kill(self) -> list[int]:
        return children_of(self.proc.pid)

    def stop(self, sig: int | None = None, timeout: float | None = None) -> int | None:
        workers = children_of(self.proc.pid) if self.proc is not None else []
        rc = super().stop(sig, timeout)
        for w in workers:  # re-parented to us (subreaper) if the master died first
            signal_pid(w, signal.SIGKILL)
            reap(w)
        return rc

    def logs(self, limit: int = 6000) -> str:
        out = []
        for p in (self.log_path, self.error_log, self.access_log):
            try:
                t = p.read_text(errors="replace")
            except OSError:
                continue
            out.append(f"--- {p.name} ---\n" + (t if len(t) <= limit else "...\n" + t[-limit:]))
        return "\n".join(out)

    def dump_logs(self, limit: int = 6000) -> str:
        return f"=== nginx (port {self.port}) ===\n{self.logs(limit)}\n"


# --------------------------------------------------------------------------------------------
# A mesh with extra [cluster] keys


DrainMesh = MeshCluster  # its `cluster=` takes extra [cluster] keys (e.g. drain_timeout)


def which_node(mesh: MeshCluster, expected_total: int, timeout: float = WAIT) -> dict:
    """Waits until the running nodes' /healthz connections add up to expected_total; returns
    {name: connections}."""
    def counts():
        c = {n.name: n.healthz()["connections"] for n in mesh.running()}
        return c if sum(c.values()) == expected_total else None
    try:
        return wait_until(counts, timeout, what=f"{expected_total} connections in all")
    except AssertionError:
        raise AssertionError(f"connections never added up to {expected_total}: "
                             f"{ {n.name: n.healthz()['connections'] for n in mesh.running()} }")


# --------------------------------------------------------------------------------------------
# The fixture


@pytest.fixture
def nginx_mesh(request):
    """nginx_mesh(names=("a1","a2"), cluster=None, balance=None, **mesh_kw) -> (DrainMesh,
    NginxFront), both started; nodes and nginx stopped by pid at teardown (logs printed when
    the test failed)."""
    if not nginx_available():
        pytest.skip(f"nginx not found at {NGINX_BIN} (apt-get install nginx-light)")
    td = teardown(request)
    return lambda names=("a1", "a2"), **kw: start_fronted_mesh(td, names, **kw)


def start_fronted_mesh(td, names, balance: str | None = None,
                       **kw) -> tuple[MeshCluster, NginxFront]:
    """A started mesh of `names` (MeshCluster keywords) and a started nginx in front of it
    (`balance`: NginxFront's), both added to the Teardown `td`."""
    mesh = td.add(DrainMesh(list(names), **kw))
    front = td.add(NginxFront(mesh.conf_path, mesh.dir, balance=balance))
    mesh.start()
    front.start()
    return mesh, front
