"""`chatmesh cluster`: the supervisor that runs one `chatmesh serve` per local node.

Each test writes a 2-node loopback cluster.conf on free ports into its own temp directory and
starts `chatmesh cluster --config F`. Processes are found through /proc (children of the
supervisor, or any process whose command line holds that config path, which is unique to the
test), and are always stopped by pid in teardown, also when the test fails.
"""

from __future__ import annotations

import os
import signal
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests

from chatmesh_testkit import RecordingClient, chatmesh_binary, free_ports
from client_tls_testkit import GenCertsPKI
from harness.cluster import factory
from harness.node import config_text
from harness.process import ChildProcess, reap, signal_pid, wait_until


# --------------------------------------------------------------------------------------------
# /proc helpers


def _cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode("utf-8", "replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def _ppid_and_state(pid: int) -> tuple[int, str] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[1]), fields[0]
    except (OSError, ValueError, IndexError):
        return None


def _pids() -> list[int]:
    return [int(d) for d in os.listdir("/proc") if d.isdigit()]


def serve_processes(conf: Path) -> dict[int, list[str]]:
    """Live (non-zombie) `chatmesh serve` processes started with this config path."""
    found = {}
    for pid in _pids():
        args = _cmdline(pid)
        if "serve" in args and str(conf) in args:
            ps = _ppid_and_state(pid)
            if ps is not None and ps[1] != "Z":
                found[pid] = args
    return found


def node_children(supervisor: int, name: str) -> list[int]:
    """Live children of the supervisor whose command line has `--node NAME`."""
    kids = []
    for pid in _pids():
        ps = _ppid_and_state(pid)
        if ps is None or ps[0] != supervisor or ps[1] == "Z":
            continue
        args = _cmdline(pid)
        if any(a == "--node" and b == name for a, b in zip(args, args[1:])):
            kids.append(pid)
    return kids


def healthz(port: int) -> dict | None:
    try:
        r = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
        return r.json() if r.status_code == 200 else None
    except (requests.RequestException, ValueError):
        return None


# --------------------------------------------------------------------------------------------
# the cluster under test


class Cluster(ChildProcess):
    """`chatmesh cluster --config F [extra...]` on a 2-node loopback cluster.conf; stdout and
    stderr in files of their own. Stopped by pid: SIGTERM to the supervisor (SIGKILL after
    20 s), then SIGKILL to whatever `chatmesh serve` of this config is left."""

    what = "chatmesh cluster"
    stop_timeout = 20.0

    def __init__(self, names=("a1", "a2"), extra=(), env: dict | None = None, https: bool = False):
        self.dir = Path(tempfile.mkdtemp(prefix="chatmesh-cluster-"))
        super().__init__(self.dir, "stderr")
        self.conf = self.dir / "cluster.conf"
        # All bound at once: one free_port() after another may hand out the same port twice.
        ports = free_ports(2 * len(names))
        self.ports = dict(zip(names, ports[:len(names)]))
        self.mesh_ports = dict(zip(names, ports[len(names):]))
        self.conf.write_text(config_text(
            [SimpleNamespace(name=n, host="127.0.0.1", port=self.ports[n], mesh_host="127.0.0.1",
                             mesh_port=self.mesh_ports[n]) for n in names],
            secret="x", writer="IntegrationTests/integration/test_cluster_supervisor.py"))
        if https:
            # Every node serves HTTPS with its own pair from `chatmesh gen-certs`.
            pki = GenCertsPKI(self.dir / "pki")
            pki.prepare(self.conf)
            text = self.conf.read_text()
            for name in names:
                cert, key = pki.issue(name)
                text = text.replace(f"[node {name}]\n", f"[node {name}]\ntls_cert = {cert}\ntls_key = {key}\n")
            self.conf.write_text(text)
        self.stdout_path = self.dir / "stdout.log"
        self.extra = list(extra)
        self.env = env

    def argv(self) -> list[str]:
        binary = chatmesh_binary()
        if not binary.exists():
            raise RuntimeError(f"chatmesh binary not found at {binary} (run `swift build` or set CHATMESH_BIN)")
        return [str(binary), "cluster", "--config", str(self.conf), *self.extra]

    def wait_all_serving(self, timeout: float = 20.0) -> None:
        for name, port in self.ports.items():
            wait_until(lambda: self._assert_running() and healthz(port), timeout,
                       f"/healthz of node {name} on port {port}")

    def _assert_running(self) -> bool:
        assert self.proc is not None and self.proc.poll() is None, \
            f"supervisor exited with {self.proc.returncode}\n{self.stderr_text()}"
        return True

    def stderr_text(self, limit: int = 20000) -> str:
        return self.log_text(limit)

    def stop(self, sig: int | None = None, timeout: float | None = None) -> int | None:
        rc = super().stop(sig, timeout)
        for pid in serve_processes(self.conf):
            signal_pid(pid, signal.SIGKILL)
            reap(pid)  # re-parented to pytest (a subreaper) when the supervisor died first
        return rc


@pytest.fixture
def cluster(request):
    """cluster(*extra, names=("a1", "a2"), env=None, https=False) -> a started Cluster."""
    return factory(request, lambda *extra, names=("a1", "a2"), env=None, https=False:
                   Cluster(names=names, extra=extra, env=env, https=https))


# --------------------------------------------------------------------------------------------
# tests


def test_starts_every_local_node_and_prints_their_pages(cluster):
    c = cluster()
    c.wait_all_serving()
    for name, port in c.ports.items():
        assert len(node_children(c.pid, name)) == 1
        body = healthz(port)
        assert body["node"] == name
    out = wait_until(lambda: (t := c.stdout_text()).count("chat page at") == 2 and t, 5,
                     "both page lines on stdout")
    for name, port in c.ports.items():
        assert f"node {name}: chat page at http://127.0.0.1:{port}/\n" in out


def test_https_nodes_are_seen_serving_and_their_pages_printed_as_https(cluster):
    c = cluster(https=True)
    out = wait_until(lambda: (t := c.stdout_text()).count("chat page at") == 2 and t, 20,
                     "both page lines on stdout")
    for name, port in c.ports.items():
        assert f"node {name}: chat page at https://127.0.0.1:{port}/\n" in out
        r = requests.get(f"https://127.0.0.1:{port}/healthz", verify=str(c.dir / "pki" / "ca.pem"), timeout=5)
        assert r.status_code == 200 and r.json()["node"] == name
    assert "node is serving" in c.stderr_text()


def test_killed_child_is_restarted_with_a_new_pid(cluster):
    c = cluster()
    c.wait_all_serving()
    [old] = node_children(c.pid, "a1")
    [other] = node_children(c.pid, "a2")
    os.kill(old, signal.SIGKILL)
    t0 = time.monotonic()

    def restarted():
        kids = node_children(c.pid, "a1")
        return kids if kids and kids != [old] and healthz(c.ports["a1"]) else None

    [new] = wait_until(restarted, 10, "a restarted a1 that answers /healthz")
    print(f"\na1 restarted and serving {time.monotonic() - t0:.2f}s after kill -9")
    assert new != old
    assert healthz(c.ports["a1"])["node"] == "a1"
    assert node_children(c.pid, "a2") == [other], "the other node must not be touched"
    assert c.proc.poll() is None
    err = c.stderr_text()
    assert "killed by signal 9 (SIGKILL)" in err
    assert "node restarted" in err


def test_sigterm_stops_every_child_and_exits_zero(cluster):
    c = cluster()
    c.wait_all_serving()
    children = set(serve_processes(c.conf))
    assert len(children) == 2
    os.kill(c.pid, signal.SIGTERM)
    rc = c.proc.wait(timeout=15)
    assert rc == 0, c.stderr_text()
    assert serve_processes(c.conf) == {}, "a chatmesh serve of this cluster outlived the supervisor"
    for pid in children:
        st = _ppid_and_state(pid)
        assert st is None or st[1] == "Z", f"child {pid} still alive"
    assert "every node has stopped" in c.stderr_text()


def test_sigint_stops_too_and_exits_zero(cluster):
    c = cluster()
    c.wait_all_serving()
    os.kill(c.pid, signal.SIGINT)
    assert c.proc.wait(timeout=15) == 0, c.stderr_text()
    assert serve_processes(c.conf) == {}


def test_child_that_exits_zero_is_not_restarted(cluster):
    c = cluster()
    c.wait_all_serving()
    [a2] = node_children(c.pid, "a2")
    os.kill(a2, signal.SIGTERM)  # serve stops cleanly and exits 0
    wait_until(lambda: not node_children(c.pid, "a2"), 10, "a2 to exit")
    time.sleep(1.5)  # longer than the first restart delay (0.5 s)
    assert node_children(c.pid, "a2") == []
    assert c.proc.poll() is None, "supervisor must keep running while a1 runs"
    assert "not restarting it" in c.stderr_text()
    # the last node exiting cleanly leaves nothing to supervise: the supervisor exits 0
    [a1] = node_children(c.pid, "a1")
    os.kill(a1, signal.SIGTERM)
    assert c.proc.wait(timeout=15) == 0, c.stderr_text()


def test_connection_count_is_logged_when_it_changes(cluster):
    c = cluster()
    c.wait_all_serving()
    wait_until(lambda: "cluster connections: 0\n" in c.stderr_text(), 5, "the initial count")
    client = RecordingClient(SimpleNamespace(http=f"http://127.0.0.1:{c.ports['a1']}"), "r1")
    try:
        client.connect()
        wait_until(lambda: "cluster connections: 1\n" in c.stderr_text(), 5, "the count of 1")
    finally:
        client.disconnect()
    wait_until(lambda: c.stderr_text().count("cluster connections: 0\n") >= 2, 5, "the count back to 0")


def test_nodes_option_runs_exactly_the_named_nodes(cluster):
    c = cluster("--nodes", "a2")
    wait_until(lambda: healthz(c.ports["a2"]), 20, "a2 to serve")
    time.sleep(1)
    assert healthz(c.ports["a1"]) is None
    assert [args[args.index("--node") + 1] for args in serve_processes(c.conf).values()] == ["a2"]


def test_unknown_node_name_is_a_clear_error(cluster):
    c = cluster("--nodes", "a1,zz")
    assert c.proc.wait(timeout=10) == 2
    err = c.stderr_text()
    assert f"{c.conf}: unknown node 'zz' in --nodes; the config has: a1, a2" in err
    assert serve_processes(c.conf) == {}


def test_cluster_speaks_sd_notify_and_hides_it_from_its_nodes(cluster, tmp_path):
    """Run as one systemd unit: READY=1 only once every node serves, STATUS= with the totals,
    STOPPING=1 on SIGTERM; the nodes do not inherit NOTIFY_SOCKET (they must not answer
    systemd in the supervisor's place)."""
    import socket

    path = tmp_path / "notify.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(path))
    listener.settimeout(0.1)
    try:
        c = cluster(env=dict(os.environ, NOTIFY_SOCKET=str(path)))
        t0 = time.monotonic()
        seen: list[tuple[float, str, bool]] = []
        while time.monotonic() - t0 < 20 and not any(m == "READY=1" for _, m, _ in seen):
            try:
                text = listener.recv(4096).decode()
            except socket.timeout:
                continue
            serving = all(healthz(port) for port in c.ports.values())
            seen.append((time.monotonic() - t0, text, serving))
        ready = [(t, ok) for t, m, ok in seen if m == "READY=1"]
        print(f"notifications: {[(round(t, 2), m) for t, m, _ in seen]}")
        assert ready, "no READY=1 from chatmesh cluster"
        assert ready[0][1], "READY=1 came before every node answered /healthz"
        for pid in serve_processes(c.conf):
            with open(f"/proc/{pid}/environ", "rb") as f:
                names = [e.split(b"=", 1)[0] for e in f.read().split(b"\0") if e]
            assert b"NOTIFY_SOCKET" not in names, f"node {pid} inherited NOTIFY_SOCKET"
        statuses = []
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not statuses:
            try:
                text = listener.recv(4096).decode()
            except socket.timeout:
                continue
            if text.startswith("STATUS="):
                statuses.append(text)
        assert statuses and "2/2 nodes serving" in statuses[0], statuses
        signal_pid(c.pid, signal.SIGTERM)
        stopping = False
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not stopping:
            try:
                stopping = listener.recv(4096).decode() == "STOPPING=1"
            except socket.timeout:
                continue
        assert stopping, "no STOPPING=1 after SIGTERM"
        assert c.proc.wait(timeout=20) == 0
    finally:
        listener.close()
