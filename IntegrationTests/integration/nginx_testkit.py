"""Helpers for the nginx front tests: a real (Debian) nginx running the config that
`chatmesh nginx-conf` generates, in front of a mesh of `chatmesh serve` processes.

    front = NginxFront(cluster.conf_path, workdir).start()   # nginx -t, then nginx (no daemon)
    front.http                                               # http://127.0.0.1:PORT
    front.stop()                                             # SIGQUIT, SIGKILL; by pid

nginx runs as a child process (`daemon off`), with every path it writes (pid, logs, temp
dirs) inside the work dir, on a free loopback port. Its master and worker pids are signalled
by pid only, also when a test fails.

Also here: `DrainMesh` (a MeshCluster whose [cluster] section takes extra keys such as
`drain_timeout`), `SioClient` (a python-socketio client with reconnection that re-emits
`join` from its `connect` handler, as an application would), `which_node`, and the pytest
fixture `nginx_mesh`.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

import pytest
import requests
import socketio

sys.path.insert(0, os.path.dirname(__file__))

from chatmesh_testkit import WAIT, chatmesh_binary, free_port  # noqa: E402
from mesh_testkit import FAST_LIMITS, MeshCluster, unique_room, wait_until  # noqa: E402,F401

NGINX_BIN = os.environ.get("NGINX_BIN", "/usr/sbin/nginx")


def nginx_available() -> bool:
    return os.access(NGINX_BIN, os.X_OK)


def _children_of(pid: int) -> list[int]:
    kids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                stat = f.read()
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(int(d))
        except (OSError, ValueError, IndexError):
            continue
    return kids


class NginxFront:
    """nginx with `chatmesh nginx-conf --config CONF --listen 127.0.0.1:PORT` included in its
    http context. `register(pid)` (optional) is told the master's pid (the browser conftest
    keeps a set of pids its orphan cleanup must leave alone)."""

    def __init__(self, cluster_conf: Path, workdir: Path, register=None, unregister=None):
        self.cluster_conf = Path(cluster_conf)
        self.dir = Path(workdir) / "nginx"
        self.dir.mkdir(parents=True, exist_ok=True)
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
        self.stdout_log = self.dir / "stdout.log"
        self.pid_file = self.dir / "nginx.pid"
        self.proc: subprocess.Popen | None = None
        self._register = register
        self._unregister = unregister
        self._out = None

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    base_url = http

    # -- config ------------------------------------------------------------------------------
    def generate(self) -> str:
        """Runs `chatmesh nginx-conf` and writes the included file and the top-level config."""
        r = subprocess.run([str(chatmesh_binary()), "nginx-conf", "--config", str(self.cluster_conf),
                            "--listen", f"127.0.0.1:{self.port}"],
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

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self, timeout: float = 10.0) -> "NginxFront":
        if not self.generated.exists():
            self.generate()
        t = self.test_config()
        assert t.returncode == 0, f"nginx -t failed ({t.returncode}):\n{t.stderr}"
        self._out = open(self.stdout_log, "wb")
        self.proc = subprocess.Popen(self._cmd("-g", "daemon off;"), stdin=subprocess.DEVNULL,
                                     stdout=self._out, stderr=subprocess.STDOUT)
        if self._register:
            self._register(self.proc.pid)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nginx exited with {self.proc.returncode} during start\n"
                                   f"{self.logs()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"nginx not listening on {self.port} within {timeout}s\n"
                                   f"{self.logs()}")
            time.sleep(0.02)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> int | None:
        """SIGQUIT (graceful; workers give up after worker_shutdown_timeout), then SIGKILL to
        the master and its workers, by pid."""
        if self.proc is None:
            return None
        pid = self.proc.pid
        workers = _children_of(pid)
        if self.proc.poll() is None:
            try:
                os.kill(pid, signal.SIGQUIT)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=4)
            except subprocess.TimeoutExpired:
                workers = sorted(set(workers) | set(_children_of(pid)))
                for p in [pid] + workers:
                    try:
                        os.kill(p, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                self.proc.wait(timeout=5)
        for w in workers:  # re-parented to us (subreaper) if the master died first
            try:
                os.kill(w, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                os.waitpid(w, os.WNOHANG)
            except ChildProcessError:
                pass
        if self._unregister:
            self._unregister(pid)
        if self._out is not None:
            self._out.close()
            self._out = None
        return self.proc.returncode

    def logs(self, limit: int = 6000) -> str:
        out = []
        for p in (self.stdout_log, self.error_log, self.access_log):
            try:
                t = p.read_text(errors="replace")
            except OSError:
                continue
            out.append(f"--- {p.name} ---\n" + (t if len(t) <= limit else "...\n" + t[-limit:]))
        return "\n".join(out)


# --------------------------------------------------------------------------------------------
# A mesh with extra [cluster] keys


class DrainMesh(MeshCluster):
    """MeshCluster whose [cluster] section also carries `cluster` (e.g. drain_timeout)."""

    def __init__(self, names, cluster: dict | None = None, **kw):
        self.cluster_extra = dict(cluster or {})
        self.sio_clients: list["SioClient"] = []
        super().__init__(names, **kw)

    def sio(self, base_url: str, room: str, username: str, connect: bool = True,
            **kw) -> "SioClient":
        """A SioClient (closed at teardown by the fixture)."""
        c = SioClient(base_url, room, username, **kw)
        self.sio_clients.append(c)
        if connect:
            c.connect()
        return c

    def config_text(self, secret: str | None = None) -> str:
        lines = super().config_text(secret).split("\n")
        i = next(i for i, l in enumerate(lines) if l.startswith("secret ="))
        lines[i + 1:i + 1] = [f"{k} = {v}" for k, v in self.cluster_extra.items()]
        return "\n".join(lines)


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
# An application-like client: reconnects, and re-joins its room from its connect handler


class SioClient:
    """python-socketio with reconnection on. Its `connect` handler emits `join` each time (as an
    app does), so after a reconnect it is back in its room. Records (monotonic time, event,
    data) of everything received, and every connect / disconnect with its reason."""

    def __init__(self, base_url: str, room: str, username: str, transports=None,
                 reconnection_delay: float = 0.5, rejoin_on_server_disconnect: bool = False):
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
        self.sio = self._new_sio()

    def _new_sio(self) -> socketio.Client:
        sio = socketio.Client(reconnection=True, reconnection_delay=self._reconnection_delay,
                              reconnection_delay_max=2, randomization_factor=0.5,
                              request_timeout=WAIT, handle_sigint=False)
        trigger = sio.eio._trigger_event

        def inline(event, *args, **kwargs):  # record in wire order (see OrderedClient)
            if event == "message":
                kwargs["run_async"] = False
            return trigger(event, *args, **kwargs)

        sio.eio._trigger_event = inline
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
        deadline = time.monotonic() + timeout
        with self.cond:
            while not pred():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out after {timeout}s waiting for {what}; "
                                         f"connects {self.connects}, disconnects "
                                         f"{self.disconnects}, last events {self.events[-8:]}")
                self.cond.wait(left)

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
    threads = [threading.Thread(target=c.close, daemon=True) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=5)


# --------------------------------------------------------------------------------------------
# The fixture


@pytest.fixture
def nginx_mesh(request):
    """nginx_mesh(names=("a1","a2"), cluster=None, **mesh_kw) -> (DrainMesh, NginxFront), both
    started; nodes and nginx stopped by pid at teardown (logs printed when the test failed)."""
    if not nginx_available():
        pytest.skip(f"nginx not found at {NGINX_BIN} (apt-get install nginx-light)")
    made: list[tuple[DrainMesh, NginxFront]] = []

    def make(names=("a1", "a2"), cluster=None, **kw):
        mesh = DrainMesh(list(names), cluster=cluster, **kw)
        front = NginxFront(mesh.conf_path, mesh.dir)
        made.append((mesh, front))
        mesh.start()
        front.start()
        return mesh, front

    yield make
    failed = any(getattr(getattr(request.node, "rep_" + w, None), "failed", False)
                 for w in ("setup", "call"))
    for mesh, front in made:
        close_all(mesh.sio_clients)
        mesh.close_clients()
        result = mesh.stop()
        front.stop()
        died = [n for n, (_, d) in result.items() if d]
        if failed or died:
            sys.stderr.write(f"\n=== mesh logs ({mesh.dir}) ===\n{mesh.logs()}\n"
                             f"=== nginx ===\n{front.logs()}\n=== end ===\n")
        else:
            shutil.rmtree(mesh.dir, ignore_errors=True)
        if died and not failed:
            pytest.fail(f"node(s) {died} died during the test", pytrace=False)
