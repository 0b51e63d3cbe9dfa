"""Reloading cluster.conf with SIGHUP (issue 16, "Live reload").

A node re-reads the file it was started with: a file with any error is rejected whole (logged
as FILE:LINE, counted as chatmesh_config_reload_total{result="rejected"}) and the node runs on;
a good file is diffed against the running config and the mesh takes added and removed peers
live, with every client staying connected. Around each reload the node tells systemd
RELOADING=1 (with MONOTONIC_USEC) and then READY=1.

Every node runs on free loopback ports from a temp dir and is stopped by pid at teardown.
"""

from __future__ import annotations

import os
import re
import signal
import time

import pytest
import requests
from types import SimpleNamespace

from chatmesh_testkit import free_ports
from harness.cluster import factory
from harness.node import Metrics, config_text
from mesh_testkit import mesh_factory, say_msg, unique_room, wait_until  # noqa: F401  (fixture)
from systemd_testkit import UNIT_DIR, notify_listener  # noqa: F401  (fixture)
from test_cluster_supervisor import Cluster as SupervisedCluster, healthz, node_children

RELOAD_S = 5.0


@pytest.fixture
def supervised(request):
    """supervised(names=("a1", "a2"), env=None) -> a started `chatmesh cluster`
    (test_cluster_supervisor's)."""
    return factory(request, lambda names=("a1", "a2"), env=None: SupervisedCluster(names=names, env=env))


def reloaded(node, count: int, result: str = "applied") -> None:
    """Waits until the node counted `count` reloads with `result`."""
    wait_until(lambda: node.counter("chatmesh_config_reload_total", result=result) >= count,
               timeout=RELOAD_S, what=f"{node.name}: {count} reload(s) {result}")


def reload_count(port: int, result: str) -> float:
    """chatmesh_config_reload_total{result} of the node listening on `port`."""
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    return Metrics.parse(text).get("chatmesh_config_reload_total", result=result) or 0.0


def hangup(*nodes) -> None:
    for node in nodes:
        node.signal(signal.SIGHUP)


def chat(sender, receiver, name: str, text: str) -> None:
    sender.say(text)
    receiver.wait_for(lambda evs: ("message", say_msg(name, text)) in evs, timeout=RELOAD_S,
                      what=f"{text!r} from {name}")


def test_a_bad_file_is_rejected_and_the_old_config_runs_on(mesh_factory, notify_listener):
    """A syntax error, an unknown key and a bad value: each is logged at its line, counted
    as rejected, and the node keeps serving its clients on the old config; then a good file
    is applied, and a changed limit is reported honestly as waiting for a restart."""
    mesh = mesh_factory(["a1"], start=False)
    node = mesh["a1"]
    node.env = {**os.environ, "NOTIFY_SOCKET": notify_listener.path}
    mesh.start()
    room = unique_room("reload-bad")
    alice = mesh.client("a1", room)
    bob = mesh.client("a1", room)
    alice.join("alice")
    bob.join("bob")
    good = mesh.conf_path.read_text()
    assert node.counter("chatmesh_config_reload_total", result="rejected") == 0
    assert node.counter("chatmesh_config_reload_total", result="applied") == 0

    bad_files = [
        ("[limits\nsay_rate = 5\n", "syntax error"),
        ("[limits]\nsay_rapidity = 5\n", "unknown key"),
        ("[limits]\nsay_rate = lots\n", "bad value"),
    ]
    for count, (section, what) in enumerate(bad_files, start=1):
        # After the good text: the error's line is past it.
        mesh.conf_path.write_text(good + "\n" + section)
        hangup(node)
        reloaded(node, count, "rejected")
        log = node.log_text(100000)
        errors = [ln for ln in log.splitlines() if "reload rejected" in ln]
        assert len(errors) == count, (what, errors)
        located = re.search(re.escape(str(mesh.conf_path)) + r":(\d+): ", errors[-1])
        assert located, (what, errors[-1])
        assert int(located.group(1)) > good.count("\n"), (what, errors[-1], "points past the good part")
        assert "error" in errors[-1], errors[-1]
        assert node.counter("chatmesh_config_reload_total", result="applied") == 0
        chat(alice, bob, "alice", f"still here after the {what}")

    # systemd heard RELOADING=1 with a monotonic timestamp, then READY=1, for every reload.
    wait_until(lambda: len(notify_listener.lines("RELOADING=1")) == 3, timeout=RELOAD_S,
               what="three RELOADING=1")
    stamps = [int(ln.split("=", 1)[1]) for _, _, ln in notify_listener.lines("MONOTONIC_USEC=")]
    assert len(stamps) == 3 and stamps == sorted(stamps), stamps
    now_us = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert all(0 < now_us - s < 60_000_000 for s in stamps), (now_us, stamps)
    lines = [ln for _, pid, ln in notify_listener.records
             if ln in ("RELOADING=1", "READY=1") and pid == node.pid]
    assert lines == ["READY=1"] + ["RELOADING=1", "READY=1"] * 3, lines

    # A good file is applied; a limit it changes is reported, and not called live.
    mesh.conf_path.write_text(good + "\n[limits]\nsay_rate = 7\n")
    hangup(node)
    reloaded(node, 1, "applied")
    log = node.log_text(100000)
    change = [ln for ln in log.splitlines() if "[limits] say_rate" in ln]
    assert change and "needs restart on" in change[-1] and "(live" not in change[-1], change
    assert node.counter("chatmesh_config_reload_total", result="rejected") == 3
    chat(bob, alice, "bob", "after the good reload")
    assert not alice.disconnected.is_set() and not bob.disconnected.is_set()
    assert node.alive()


def test_a_node_added_by_reload_joins_the_mesh(mesh_factory):
    """a1 and a2 run from a file listing only them; a3 starts from one listing all three and
    is refused by both; SIGHUP a1 and a2 with the 3-node file: within 5 s every node has the
    two others up, a client on a3 chats with one on a1, and no client on a1 or a2 noticed."""
    mesh = mesh_factory(["a1", "a2", "a3"], start=False)
    everyone = mesh.conf_path.read_text()
    pair = mesh.dir / "pair.conf"
    pair.write_text(config_text([mesh["a1"], mesh["a2"]], fanout="mesh", secret=mesh.secret))
    mesh["a1"].start(pair)
    mesh["a2"].start(pair)
    mesh.wait_mesh(names=["a1", "a2"])
    mesh["a3"].start()
    room = unique_room("reload-add")
    alice = mesh.client("a1", room)
    bob = mesh.client("a2", room)
    alice.join("alice")
    bob.join("bob")
    chat(alice, bob, "alice", "before the reload")
    assert "a3" not in mesh["a1"].peers()[0]

    pair.write_text(everyone)
    hangup(mesh["a1"], mesh["a2"])
    took = mesh.wait_mesh(timeout=RELOAD_S, names=["a1", "a2", "a3"])
    print(f"\nreload -> full 3-node mesh: {took:.2f}s")
    for name in ("a1", "a2"):
        reloaded(mesh[name], 1)
        assert "node a3 added (live" in mesh[name].log_text(100000)

    carol = mesh.client("a3", room)
    carol.join("carol")
    chat(carol, alice, "carol", "hello from the new node")
    chat(alice, carol, "alice", "welcome, a3")
    chat(bob, carol, "bob", "a2 hears you too")
    for client in (alice, bob):
        assert not client.disconnected.is_set(), "a client noticed the reload"


def test_a_node_removed_by_reload_is_cut_off(mesh_factory):
    """Three linked nodes; a1 and a2 reload a file without a3 (and a new [mesh] reconnect_max):
    a3's links close (it reports both down), a1 and a2 drop it from their peers and take the
    setting, and their clients keep exchanging with nothing lost."""
    mesh = mesh_factory(["a1", "a2", "a3"])
    room = unique_room("reload-remove")
    alice = mesh.client("a1", room)
    bob = mesh.client("a2", room)
    alice.join("alice")
    bob.join("bob")
    chat(alice, bob, "alice", "before the removal")

    mesh.conf_path.write_text(config_text([mesh["a1"], mesh["a2"]], fanout="mesh", secret=mesh.secret,
                                          sections={"mesh": {"reconnect_max": 1500}}))
    hangup(mesh["a1"], mesh["a2"])
    for name in ("a1", "a2"):
        reloaded(mesh[name], 1)
        # A [mesh] setting goes to the mesh with the peer change.
        assert re.search(r"reload: mesh: .*peers removed a3.*reconnect_max \d+ -> 1500", mesh[name].log_text(100000)), \
            mesh[name].log_text(4000)
        mesh[name].wait_health(lambda body: "a3" not in (body.get("mesh") or {}).get("peers_up", [])
                               + (body.get("mesh") or {}).get("peers_down", []), timeout=RELOAD_S)
    mesh["a3"].wait_health(lambda body: not (body.get("mesh") or {}).get("peers_up"), timeout=RELOAD_S)

    texts = [f"after the removal {i}" for i in range(20)]
    for text in texts:
        alice.say(text)
    bob.wait_for(lambda evs: all(("message", say_msg("alice", t)) in evs for t in texts),
                 timeout=RELOAD_S, what="every say after the removal")
    got = [e for e in bob.snapshot() if e[0] == "message" and e[1] in [say_msg("alice", t) for t in texts]]
    assert len(got) == len(texts), "a say was delivered twice"
    chat(bob, alice, "bob", "a2 to a1 after the removal")
    for client in (alice, bob):
        assert not client.disconnected.is_set(), "a client noticed the reload"


def test_cluster_reload_starts_added_and_stops_removed_local_nodes(supervised, notify_listener):
    """`chatmesh cluster` on a1 and a2; the file then lists a1 and a3: SIGHUP to the supervisor
    stops a2, starts a3, and tells a1 (the same process) to reload; systemd hears RELOADING=1
    and READY=1 from the supervisor."""
    c = supervised(env={**os.environ, "NOTIFY_SOCKET": notify_listener.path})
    c.wait_all_serving()
    wait_until(lambda: notify_listener.lines("READY=1"), RELOAD_S, "the supervisor's READY=1")
    [a1] = node_children(c.pid, "a1")
    [a3_port, a3_mesh] = free_ports(2)
    nodes = [SimpleNamespace(name="a1", host="127.0.0.1", port=c.ports["a1"], mesh_host="127.0.0.1",
                             mesh_port=c.mesh_ports["a1"]),
             SimpleNamespace(name="a3", host="127.0.0.1", port=a3_port, mesh_host="127.0.0.1",
                             mesh_port=a3_mesh)]
    c.conf.write_text(config_text(nodes, secret="x", writer="IntegrationTests/integration/test_reload.py"))
    c.signal(signal.SIGHUP)
    # A process start and a drain, not a reload: the start-up allowance of the other suites.
    wait_until(lambda: not node_children(c.pid, "a2"), 15, "a2 stopped")
    wait_until(lambda: healthz(a3_port), 20, "a3 started and serving")
    assert len(node_children(c.pid, "a3")) == 1
    assert node_children(c.pid, "a1") == [a1], "a1 was restarted instead of reloaded"
    wait_until(lambda: reload_count(c.ports["a1"], "applied") >= 1, RELOAD_S, "a1 reloaded")
    assert c.alive(), c.stderr_text()
    lines = [ln for _, pid, ln in notify_listener.records
             if ln in ("RELOADING=1", "READY=1") and pid == c.pid]
    assert lines == ["READY=1", "RELOADING=1", "READY=1"], lines
    log = c.stderr_text()
    assert "SIGHUP: reloading" in log and "removed by the reload" in log, log


def test_the_node_unit_reloads_with_sighup():
    """`systemctl reload chatmesh@NAME` sends SIGHUP, and the unit stays Type=notify for
    systemd 252 (test_systemd_units verifies the units as a whole)."""
    text = (UNIT_DIR / "chatmesh@.service").read_text()
    settings = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    assert "ExecReload=/bin/kill -HUP $MAINPID" in settings
    assert "Type=notify" in settings
