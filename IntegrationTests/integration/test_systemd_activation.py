"""chatmesh under systemd's protocols, with Debian's real tools instead of PID 1:
socket activation through `systemd-socket-activate` (named fds `client` and `mesh`), and
sd_notify through a NOTIFY_SOCKET datagram listener in the test (READY=1, STATUS=,
WATCHDOG=1, STOPPING=1; sender pid checked as NotifyAccess=main does).

systemd-socket-activate binds, waits for the first connection attempt, then execs chatmesh in
its own process. The kernel completes TCP handshakes on the listening socket before chatmesh
runs at all, so "the port accepts" is measured where it means something: READY=1 must come
after chatmesh logged that it listens on the inherited socket, and a request made the moment
READY=1 arrives is answered. For a node that binds its own sockets, a connect made the moment
READY=1 arrives must succeed on both its client and mesh ports.
"""

from __future__ import annotations

import socket
import statistics
import threading
import time
import types
import uuid

import requests

from chatmesh_testkit import RecordingClient, join_msg, say_msg
from redis_testkit import RedisServer, redis_factory  # noqa: F401  (fixture)
from systemd_testkit import (cluster_conf, fd_inode, free_ports, listening_inodes,  # noqa: F401
                             node_runner, notify_listener, socket_fds, workdir)

DRAIN_MS = 3000


def room() -> str:
    return f"sd-{uuid.uuid4().hex[:8]}"


def endpoint(port: int):
    """What RecordingClient needs of a node."""
    return types.SimpleNamespace(http=f"http://127.0.0.1:{port}")


def raw_get(port: int, path: str = "/healthz", timeout: float = 20.0) -> tuple[float, str]:
    """Connects, sends a GET and reads the whole answer (Connection: close). Returns the
    monotonic time the TCP connect completed and the answer text."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    t = time.monotonic()
    try:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        chunks = []
        while True:
            b = s.recv(65536)
            if not b:
                break
            chunks.append(b)
        return t, b"".join(chunks).decode("utf-8", "replace")
    finally:
        s.close()


class ReadyProbe:
    """Hooked onto the listener: when READY=1 arrives, records the time and what chatmesh
    had logged by then, and (optionally) tries the given ports at once."""

    def __init__(self, node, probe_ports=()):
        self.node = node
        self.probe_ports = list(probe_ports)
        self.t_ready = None
        self.log_at_ready = None
        self.connects: dict[int, str] = {}
        self.done = threading.Event()

    def __call__(self, line, t, pid):
        if line != "READY=1" or self.done.is_set():
            return
        self.t_ready = t
        self.log_at_ready = self.node.log_text(10 ** 7)
        for port in self.probe_ports:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                self.connects[port] = "ok"
            except OSError as e:
                self.connects[port] = repr(e)
        self.done.set()


def chat_pair(port: int, r: str):
    """A WebSocket client and a polling client in room r chat over the node at port."""
    node = endpoint(port)
    alice = RecordingClient(node, r, transports=["websocket"]).connect()
    bob = RecordingClient(node, r, transports=["polling"]).connect()
    assert alice.transport() == "websocket" and bob.transport() == "polling"
    alice.join("alice")
    bob.join("bob")
    alice.say("hello from websocket")
    bob.say("hello from polling")
    for c in (alice, bob):
        c.wait_for(lambda evs: ("message", say_msg("alice", "hello from websocket")) in evs
                   and ("message", say_msg("bob", "hello from polling")) in evs,
                   what="both says")
    assert ("message", join_msg("bob")) in alice.snapshot()
    return alice, bob


def test_activated_node_serves_and_notifies(node_runner, notify_listener):
    """One inherited socket named client, no --node: the node finds itself by the socket's
    address, serves WebSocket and polling clients on it, and tells systemd READY (after it
    listens), STATUS, STOPPING; SIGTERM drains and exits 0 within drain_timeout."""
    port, mesh = free_ports(2)
    conf = cluster_conf({"a1": (port, mesh)}, cluster={"drain_timeout": DRAIN_MS})
    node = node_runner(conf, listens=[("127.0.0.1", port)], fdnames=["client"],
                       env={"NOTIFY_SOCKET": notify_listener.path})
    probe = ReadyProbe(node)
    notify_listener.hooks.append(probe)
    node.wait_listening(port)
    time.sleep(0.3)
    assert node.alive() and "Execing" not in node.log_text(), "must wait for a connection"
    assert notify_listener.lines() == [], "nothing is announced before chatmesh runs"

    # This first request is what starts chatmesh; it waits in the socket's backlog meanwhile.
    t_connect, answer = raw_get(port)
    t_answer = time.monotonic()
    assert answer.startswith("HTTP/1.1 200"), answer
    assert '"node":"a1"' in answer, answer
    assert probe.done.wait(5), f"no READY=1; got {notify_listener.lines()}\n{node.log_text()}"
    print(f"\nfirst connect (to systemd-socket-activate's socket) -> READY=1: "
          f"{probe.t_ready - t_connect:.3f}s; first answer at {t_answer - t_connect:.3f}s")

    # READY=1 came from chatmesh itself, after it logged that it listens on the inherited fd
    [(_, pid, _)] = notify_listener.lines("READY=1")
    assert pid == node.pid, f"READY=1 from pid {pid}, the main pid is {node.pid}"
    assert "Execing" in probe.log_at_ready
    assert "inherited=true" in probe.log_at_ready and "listening" in probe.log_at_ready, \
        probe.log_at_ready
    # the node was found by the inherited socket's address (no --node given)
    assert "node=a1" in probe.log_at_ready
    # the listening socket on the port is fd 3, the one systemd-socket-activate made
    assert listening_inodes(port) == {fd_inode(node.pid, 3)}, (listening_inodes(port),
                                                               socket_fds(node.pid))

    alice, bob = chat_pair(port, room())
    # STATUS= every 2 s, with the connection and room counts
    status = notify_listener.wait_for("STATUS=", count=2, timeout=6)
    assert all(p == node.pid for _, p, _ in status)
    deadline = time.monotonic() + 5
    while not any("2 connections, 1 rooms" in ln for _, _, ln in notify_listener.lines("STATUS=")):
        assert time.monotonic() < deadline, notify_listener.lines("STATUS=")
        time.sleep(0.1)

    # SIGTERM: STOPPING=1, the clients are let go, exit 0 within drain_timeout
    t_term = node.terminate()
    stopping = notify_listener.wait_for("STOPPING=1")
    assert stopping[0][1] == node.pid
    rc = node.proc.wait(timeout=DRAIN_MS / 1000 + 5)
    t_exit = time.monotonic()
    print(f"SIGTERM -> STOPPING=1 {stopping[0][0] - t_term:.3f}s, exit {t_exit - t_term:.3f}s")
    assert rc == 0, node.log_text()
    assert t_exit - t_term < DRAIN_MS / 1000 + 1.0
    assert alice.disconnected.wait(5) and bob.disconnected.wait(5)
    assert len(notify_listener.lines("READY=1")) == 1


def test_single_unnamed_fd_is_the_client_socket(node_runner, notify_listener):
    port, mesh = free_ports(2)
    conf = cluster_conf({"a1": (port, mesh)})
    node = node_runner(conf, listens=[("127.0.0.1", port)],
                       env={"NOTIFY_SOCKET": notify_listener.path})
    node.wait_listening(port)
    _, answer = raw_get(port)
    assert answer.startswith("HTTP/1.1 200") and '"node":"a1"' in answer, answer
    notify_listener.wait_for("READY=1")
    assert listening_inodes(port) == {fd_inode(node.pid, 3)}
    chat_pair(port, room())


def test_inherited_socket_that_matches_no_node_is_refused(node_runner):
    port, other = free_ports(2)
    conf = cluster_conf({"a1": (other, None)})
    node = node_runner(conf, listens=[("127.0.0.1", port)], fdnames=["client"])
    node.wait_listening(port)
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except OSError:
        pass
    node.expect_exit = True
    rc = node.proc.wait(timeout=10)
    assert rc != 0
    assert f"127.0.0.1:{port}, which matches 0 nodes" in node.log_text(), node.log_text()
    assert "pass --node" in node.log_text()


def test_watchdog_pings_at_half_the_interval(node_runner, notify_listener):
    port, = free_ports(1)
    node = node_runner(cluster_conf({"a1": (port, None)}), listens=[("127.0.0.1", port)],
                       fdnames=["client"], env={"NOTIFY_SOCKET": notify_listener.path,
                                                "WATCHDOG_USEC": "1000000"})
    node.wait_listening(port)
    raw_get(port)
    notify_listener.wait_for("READY=1")
    t0 = time.monotonic()
    pings = notify_listener.wait_for("WATCHDOG=1", count=7, timeout=6)
    times = [t for t, _, _ in pings]
    gaps = [b - a for a, b in zip(times, times[1:])]
    print(f"\nWATCHDOG=1 gaps (WATCHDOG_USEC=1000000): {[round(g, 3) for g in gaps]}")
    assert all(p == node.pid for _, p, _ in pings)
    assert 0.4 <= statistics.median(gaps) <= 0.6, gaps
    assert max(gaps) < 1.0, "systemd would have declared the node hung"
    assert time.monotonic() - t0 < 5


def test_no_watchdog_pings_without_watchdog_usec(node_runner, notify_listener):
    port, = free_ports(1)
    node = node_runner(cluster_conf({"a1": (port, None)}), listens=[("127.0.0.1", port)],
                       fdnames=["client"], env={"NOTIFY_SOCKET": notify_listener.path})
    node.wait_listening(port)
    raw_get(port)
    notify_listener.wait_for("READY=1")
    notify_listener.wait_for("STATUS=", count=2, timeout=6)  # the channel works meanwhile
    assert notify_listener.lines("WATCHDOG") == []


def test_self_bound_node_is_ready_only_when_its_ports_accept(node_runner, notify_listener):
    """Without socket activation chatmesh binds itself: the moment READY=1 arrives, both the
    client port and the mesh port take connections (the peer a2 is down; readiness does
    not wait for peers)."""
    port, mesh, port2, mesh2 = free_ports(4)
    conf = cluster_conf({"a1": (port, mesh), "a2": (port2, mesh2)})
    node = node_runner(conf, node="a1", env={"NOTIFY_SOCKET": notify_listener.path})
    probe = ReadyProbe(node, probe_ports=[port, mesh])
    notify_listener.hooks.append(probe)
    assert probe.done.wait(20), f"no READY=1:\n{node.log_text()}"
    assert probe.connects == {port: "ok", mesh: "ok"}, probe.connects
    assert "mesh listening" in probe.log_at_ready and "listening" in probe.log_at_ready
    assert notify_listener.lines("READY=1")[0][1] == node.pid
    body = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).json()
    assert body["mesh"]["peers_down"] == ["a2"], body


def test_two_fds_client_and_mesh(node_runner, notify_listener):
    """a2 runs from two inherited sockets (--fdname=client:mesh, no --node); a1 runs
    normally. a1 dials a2 (the smaller name dials), and that dial on the inherited mesh socket
    is what starts a2. The link comes up, and clients on both nodes chat."""
    p1, m1, p2, m2 = free_ports(4)
    conf = cluster_conf({"a1": (p1, m1), "a2": (p2, m2)},
                        extra="[mesh]\nreconnect_max = 500")
    a2 = node_runner(conf, listens=[("127.0.0.1", p2), ("127.0.0.1", m2)],
                     fdnames=["client", "mesh"], env={"NOTIFY_SOCKET": notify_listener.path})
    a2.wait_listening(m2)
    a1 = node_runner(a2.conf_path, node="a1")
    a2.wait_log("Execing", timeout=10)  # a1's mesh dial woke it up
    assert "Communication attempt on fd 4" in a2.log_text(), a2.log_text()
    notify_listener.wait_for("READY=1", timeout=10)
    a1.wait_healthy(p1)
    h2 = a2.wait_healthy(p2)
    assert h2["node"] == "a2"
    deadline = time.monotonic() + 10
    while True:
        up1 = requests.get(f"http://127.0.0.1:{p1}/healthz", timeout=5).json()["mesh"]["peers_up"]
        up2 = requests.get(f"http://127.0.0.1:{p2}/healthz", timeout=5).json()["mesh"]["peers_up"]
        if up1 == ["a2"] and up2 == ["a1"]:
            break
        assert time.monotonic() < deadline, (up1, up2, a2.log_text())
        time.sleep(0.05)
    # both listening sockets of a2 are the inherited fds 3 (client) and 4 (mesh)
    assert listening_inodes(p2) == {fd_inode(a2.pid, 3)}
    assert listening_inodes(m2) == {fd_inode(a2.pid, 4)}
    status = notify_listener.wait_for("STATUS=", timeout=5)
    deadline = time.monotonic() + 5
    while not any("mesh peers up 1/1" in ln for _, _, ln in notify_listener.lines("STATUS=")):
        assert time.monotonic() < deadline, status
        time.sleep(0.1)

    r = room()
    alice = RecordingClient(endpoint(p1), r, transports=["websocket"]).connect()
    bob = RecordingClient(endpoint(p2), r, transports=["polling"]).connect()
    try:
        alice.join("alice")
        bob.join("bob")
        alice.wait_for(lambda evs: ("message", join_msg("bob")) in evs, what="bob's join")
        alice.say("over the mesh")
        bob.say("and back")
        for c in (alice, bob):
            c.wait_for(lambda evs: ("message", say_msg("alice", "over the mesh")) in evs
                       and ("message", say_msg("bob", "and back")) in evs, what="both says")
    finally:
        alice.disconnect()
        bob.disconnect()


def test_redis_mode_ready_only_once_subscribed(node_runner, notify_listener,
                                               redis_factory):  # noqa: F811
    """fanout = redis: the node serves /healthz at once but announces READY=1 only once its
    Redis subscriber is up."""
    redis: RedisServer = redis_factory(start=False)
    port, = free_ports(1)
    conf = cluster_conf({"a1": (port, None)}, cluster={"fanout": "redis"},
                        extra=f"[redis]\nurl = {redis.url}")
    node = node_runner(conf, listens=[("127.0.0.1", port)], fdnames=["client"],
                       env={"NOTIFY_SOCKET": notify_listener.path})
    node.wait_listening(port)
    raw_get(port)
    statuses = notify_listener.wait_for("STATUS=", count=2, timeout=6)
    assert notify_listener.lines("READY=1") == [], "READY=1 without Redis"
    assert "redis down" in statuses[-1][2], statuses
    t_up = time.monotonic()
    redis.start()
    deadline = time.monotonic() + 15
    while requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).json().get("redis") != "up":
        assert time.monotonic() < deadline, node.log_text()
        time.sleep(0.02)
    t_subscribed = time.monotonic()
    [(t_ready, pid, _)] = notify_listener.wait_for("READY=1", timeout=10)
    print(f"\nRedis up -> subscriber up (/healthz) {t_subscribed - t_up:.2f}s -> READY=1 "
          f"{t_ready - t_subscribed:+.2f}s")
    assert pid == node.pid
    assert t_ready > t_up
    # readiness is looked at on the 2 s STATUS tick, so READY=1 may lag the subscriber by that
    assert t_ready - t_subscribed < 2.5
