"""A real network for the fault suite: each node of a mesh in its own network namespace.

    test process (root namespace)
      | cm<pid>a1 10.C.C.1/30  ...  cm<pid>a3 10.C.C.9/30      client links (veth pairs)
      |                                                         that partitions never touch
    [ns n1] cli0 .2/30, mesh0 10.99.0.1/24   [ns n2] ... .2   [ns n3] ... .3
                         |                            |                |
                [ns sw]  p1 --------- br0 ---------- p2 ------------- p3       the cluster
                                                                              network (veths)

Every node has two interfaces: `mesh0`, a veth into a bridge that lives in a dedicated
"switch" namespace (so the host's own network is not touched), carrying the node-to-node
links; and `cli0`, a veth pair to the root namespace, on which the node's Socket.IO listener
sits and through which the test process (its clients, `chatmesh bench`, /healthz, /metrics)
reaches it. cluster.conf lists each node's own addresses: `listen` on cli0, `mesh` on mesh0.
A partition is a pulled cable at the switch: `ip link set pN down` in the switch namespace
(mesh0 loses its carrier; frames both ways are dropped, nothing is reset), so the node stays
reachable by its own clients, as a node cut off from its peers is.

Names carry a per-run prefix (`cmft<pid><label>-…`), so runs (and two topologies of one
run) never collide; `down()` kills whatever
still runs in the namespaces (by pid), deletes them (which deletes their veths) and the
root-side ends, also after a failed `up()`. Namespaces left by a run that died (its pid gone)
are swept at the next `up()`.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

from harness.process import reap, signal_pid
from mesh_testkit import MeshCluster

PREFIX = "cmft"
MESH_NET = "10.99.0"  # exists only inside the namespaces: no clash with the host possible
MESH_PORT = 7001
CLIENT_PORT = 6001


class NetnsUnavailable(Exception):
    """This machine (or user) cannot build the topology; the message says why."""


def _run(cmd: list[str], check: bool = True, timeout: float = 15) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise NetnsUnavailable(f"`{' '.join(cmd)}` failed: {(r.stderr or r.stdout).strip()}")
    return r


def ip(*args: str, ns: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    return _run(["ip"] + (["-n", ns] if ns else []) + list(args), check=check)


def unavailable_reason() -> str | None:
    """Why network namespaces cannot be used here, or None (the real proof is up())."""
    if os.geteuid() != 0:
        return "not root (network namespaces need CAP_NET_ADMIN)"
    if shutil.which("ip") is None:
        return "iproute2 (`ip`) is not installed"
    return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def _netns_names() -> list[str]:
    r = ip("netns", "list", check=False)
    return [line.split()[0] for line in r.stdout.splitlines() if line.strip()]


def _kill_netns_pids(ns: str) -> list[int]:
    """SIGKILLs every process in `ns` (only ours live there) and waits for them to go."""
    r = ip("netns", "pids", ns, check=False)
    pids = [int(p) for p in r.stdout.split() if p.isdigit()]
    for pid in pids:
        signal_pid(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    for pid in pids:
        while _pid_alive(pid) and time.monotonic() < deadline:
            reap(pid)  # our child: reaped; otherwise someone else's (the subreaper's) to reap
            time.sleep(0.02)
    return pids


def sweep_stale() -> list[str]:
    """Deletes namespaces of earlier runs whose test process is gone."""
    removed = []
    for ns in _netns_names():
        m = re.fullmatch(PREFIX + r"(\d+)[a-z]?-\w+", ns)
        if m and int(m.group(1)) != os.getpid() and not _pid_alive(int(m.group(1))):
            _kill_netns_pids(ns)
            ip("netns", "del", ns, check=False)
            removed.append(ns)
    return removed


def _client_subnet() -> ipaddress.IPv4Network:
    """A /24 for the client links that no route or address of the root namespace touches."""
    used = []
    for cmd in (["ip", "-4", "route", "show", "table", "all"], ["ip", "-4", "-o", "addr"]):
        for word in _run(cmd, check=False).stdout.split():
            try:
                net = ipaddress.ip_network(word, strict=False)
            except ValueError:
                continue
            if net.version == 4 and net.prefixlen > 0:
                used.append(net)
    pid = os.getpid()
    for i in range(2000):
        k = pid + i
        cand = ipaddress.ip_network(f"10.{200 + k % 50}.{(k // 50) % 256}.0/24")
        if not any(cand.overlaps(u) for u in used):
            return cand
    raise NetnsUnavailable("no free 10.x.y.0/24 for the client links")


class NetnsTopology:
    """`count` node namespaces on one bridge, each with a client link to the root namespace.
    `label` (one letter) tells two topologies of one test process apart."""

    def __init__(self, count: int = 3, label: str = "a"):
        assert re.fullmatch(r"[a-z]", label) and count <= 9
        self.count = count
        self.tag = f"{PREFIX}{os.getpid()}{label}"
        self.switch = f"{self.tag}-sw"
        self.ns = [f"{self.tag}-n{i}" for i in range(1, count + 1)]
        self.root_links = [f"cm{os.getpid()}{label}{i}" for i in range(1, count + 1)]
        self.client_net: ipaddress.IPv4Network | None = None
        self.created: list[str] = []
        self.partitioned: set[int] = set()
        self.swept: list[str] = []
        self.setup_s = 0.0

    # Addresses, by node index 1..count
    def mesh_addr(self, i: int) -> str:
        return f"{MESH_NET}.{i}"

    def client_addr(self, i: int) -> str:
        """The node's side of its client link (where it listens)."""
        return str(self.client_net.network_address + 4 * (i - 1) + 2)

    def _root_addr(self, i: int) -> str:
        return str(self.client_net.network_address + 4 * (i - 1) + 1)

    def up(self) -> "NetnsTopology":
        t0 = time.monotonic()
        try:
            self.swept = sweep_stale()
            self.client_net = _client_subnet()
            for ns in [self.switch] + self.ns:
                ip("netns", "add", ns)
                self.created.append(ns)
                ip("link", "set", "lo", "up", ns=ns)
            ip("link", "add", "br0", "type", "bridge", ns=self.switch)
            ip("link", "set", "br0", "up", ns=self.switch)
            for i, ns in enumerate(self.ns, start=1):
                # cluster network: mesh0 (node) <-> pI (switch port)
                ip("link", "add", f"p{i}", "type", "veth", "peer", "name", "mesh0", "netns", ns,
                   ns=self.switch)
                ip("link", "set", f"p{i}", "master", "br0", "up", ns=self.switch)
                ip("addr", "add", f"{self.mesh_addr(i)}/24", "dev", "mesh0", ns=ns)
                ip("link", "set", "mesh0", "up", ns=ns)
                # client link: root end <-> cli0 (node)
                root = self.root_links[i - 1]
                ip("link", "add", root, "type", "veth", "peer", "name", "cli0", "netns", ns)
                ip("addr", "add", f"{self._root_addr(i)}/30", "dev", root)
                ip("link", "set", root, "up")
                ip("addr", "add", f"{self.client_addr(i)}/30", "dev", "cli0", ns=ns)
                ip("link", "set", "cli0", "up", ns=ns)
            self._check_reachable()
        except BaseException:
            self.down()
            raise
        self.setup_s = time.monotonic() - t0
        return self

    def _check_reachable(self):
        """`ip netns exec` works here (it needs a mount namespace and /sys)."""
        r = _run(self.exec_prefix(1) + ["true"], check=False)
        if r.returncode != 0:
            raise NetnsUnavailable(f"`ip netns exec` does not work: "
                                   f"{(r.stderr or r.stdout).strip()}")

    def down(self) -> list[int]:
        """Kills what still runs in our namespaces (by pid), deletes them and our links."""
        killed = []
        for ns in reversed(self.created):
            killed += _kill_netns_pids(ns)
        for ns in reversed(self.created):
            ip("netns", "del", ns, check=False)
        for link in self.root_links:  # normally gone with their peers; make sure
            if ip("link", "show", link, check=False).returncode == 0:
                ip("link", "del", link, check=False)
        self.created.clear()
        self.partitioned.clear()
        return killed

    # Faults
    def partition(self, i: int):
        """Pulls node i's cable at the switch: its mesh links go silent (no reset)."""
        ip("link", "set", f"p{i}", "down", ns=self.switch)
        self.partitioned.add(i)

    def heal(self, i: int):
        ip("link", "set", f"p{i}", "up", ns=self.switch)
        self.partitioned.discard(i)

    def heal_all(self):
        for i in sorted(self.partitioned):
            self.heal(i)

    def exec_prefix(self, i: int) -> list[str]:
        return ["ip", "netns", "exec", self.ns[i - 1]]

    def tcp_states(self, i: int, port: int) -> list[tuple[str, str]]:
        """(state, peer address) of node i's TCP sockets on local port `port` (`ss`)."""
        r = _run(self.exec_prefix(i) + ["ss", "-Htan", f"sport = :{port}"], check=False)
        out = []
        for line in r.stdout.splitlines():
            parts = line.split()
            if len(parts) >= 5:
                out.append((parts[0], parts[4]))
        return out


def snapshot_binary(source: Path, into: Path, timeout: float = 60.0) -> Path:
    """A private copy of the chatmesh binary, so a rebuild during the run (others work in the
    same tree) can neither fail a start (ETXTBSY) nor change the server between two cases.
    A copy taken while the linker writes is caught by running it once."""
    target = into / "chatmesh"
    deadline = time.monotonic() + timeout
    while True:
        try:
            shutil.copy2(source, target)
            if _run([str(target), "--help"], check=False).returncode == 0:
                return target
            problem = "the copy does not run"
        except OSError as e:
            problem = repr(e)
        if time.monotonic() > deadline:
            raise RuntimeError(f"cannot snapshot {source}: {problem}")
        time.sleep(1.0)


NETNS_SECRET = "netns-suite-secret-5f1c0a9e3b7d4c2a8e6f0b1d3c5a7e9f"


class NetnsCluster(MeshCluster):
    """A MeshCluster whose node k (names[k-1]) runs in namespace k of `topo`: same helpers
    (clients, peers(), metrics(), write_variant, stop by pid), real addresses."""

    def __init__(self, topo: NetnsTopology, names, binary: Path | None = None, **kw):
        assert len(names) <= topo.count
        # The mesh addresses are not loopback, so the secret must be a strong one.
        kw.setdefault("secret", NETNS_SECRET)
        super().__init__(names, **kw)
        self.topo = topo
        self.index = {}
        for i, name in enumerate(self.names, start=1):
            n = self.nodes[name]
            n.host, n.port = topo.client_addr(i), CLIENT_PORT
            n.mesh_host, n.mesh_port = topo.mesh_addr(i), MESH_PORT
            n.command_prefix = topo.exec_prefix(i)
            n.binary = binary
            self.index[name] = i
        self.conf_path.write_text(self.config_text())

    def partition(self, name: str):
        self.topo.partition(self.index[name])

    def heal(self, name: str):
        self.topo.heal(self.index[name])

    def target(self, name: str) -> str:
        """host:port of a node's client listener (for `chatmesh bench --targets`)."""
        n = self.nodes[name]
        return f"{n.host}:{n.port}"
