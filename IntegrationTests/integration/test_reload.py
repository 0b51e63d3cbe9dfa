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
    is applied, and the limit it changes is applied live."""
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

    # A good file is applied, and the limit it changes is applied live.
    mesh.conf_path.write_text(good + "\n[limits]\nsay_rate = 7\n")
    hangup(node)
    reloaded(node, 1, "applied")
    log = node.log_text(100000)
    change = [ln for ln in log.splitlines() if "[limits] say_rate" in ln]
    assert change and "[limits] say_rate: 20 -> 7 (live)" in change[-1] and "needs restart" not in change[-1], change
    assert node.counter("chatmesh_config_reload_total", result="rejected") == 3
    chat(bob, alice, "bob", "after the good reload")
    assert not alice.disconnected.is_set() and not bob.disconnected.is_set()
    assert node.alive()


def test_a_changed_limit_takes_effect_without_restart(mesh_factory):
    """Two linked nodes with text_max = 100 and a generous say rate; clients on both (one of
    them long-polling) chat; SIGHUP both with text_max = 20, say_rate = 1, say_burst = 2: the
    log calls each change live, the reload is counted as applied, and with no restart and no
    client disconnected, a say longer than 20 characters is refused (text_too_long) and not
    delivered, a burst of short says is cut to the new burst (rate_limited), and a short say
    still crosses the mesh. The same reload sets `[cluster] log_level = debug`: a session opened
    after it is logged at debug. `check-config --diff` shows the same changes as live."""
    import subprocess

    from chatmesh_testkit import chatmesh_binary

    mesh = mesh_factory(["a1", "a2"], limits={"text_max": 100, "say_rate": 100000, "say_burst": 100000})
    a1, a2 = mesh["a1"], mesh["a2"]
    pids = {n.name: n.pid for n in (a1, a2)}
    room = unique_room("reload-limit")
    alice = mesh.client("a1", room)
    bob = mesh.client("a2", room)
    carol = mesh.client("a1", room, transports=("polling",))
    alice.join("alice")
    bob.join("bob")
    carol.join("carol")
    long_text = "x" * 60
    chat(alice, bob, "alice", long_text)
    old = mesh.dir / "before.conf"
    old.write_text(mesh.conf_path.read_text())

    quiet = os.environ.get("CHATMESH_LOG_LEVEL", "info") not in ("debug", "trace")
    if quiet:
        assert "session opened" not in a1.log_text(100000), "debug lines before log_level = debug"
    mesh.limits.update({"text_max": 20, "say_rate": 1, "say_burst": 2})
    mesh.cluster_extra["log_level"] = "debug"
    mesh.conf_path.write_text(mesh.config_text())
    hangup(a1, a2)
    for node in (a1, a2):
        reloaded(node, 1, "applied")
        log = node.log_text(100000)
        for line in ("[limits] text_max: 100 -> 20 (live)", "[limits] say_rate: 100000 -> 1 (live)",
                     "[limits] say_burst: 100000 -> 2 (live)", "[cluster] log_level: none (the --log-level flag) -> debug (live)"):
            assert line in log, (node.name, line, log[-3000:])
        assert "needs restart" not in log, log[-3000:]
        assert node.counter("chatmesh_config_reload_total", result="rejected") == 0

    # The long say is refused to its sender, and nobody else hears it.
    alice.say("y" * 60)
    alice.wait_for(lambda evs: any(e == "error" and a.get("reason") == "text_too_long" for e, a in evs),
                   timeout=RELOAD_S, what="text_too_long after the reload")
    # A short say still crosses the mesh and reaches the polling client; the refused one,
    # said before it, would have arrived first.
    chat(bob, alice, "bob", "short")
    carol.wait_for(lambda evs: ("message", say_msg("bob", "short")) in evs, timeout=RELOAD_S, what="bob's short say")
    assert ("message", say_msg("alice", "y" * 60)) not in bob.snapshot() + carol.snapshot()

    # Alice's bucket held 100000 tokens; the reload capped it to the new burst of 2.
    burst = [f"burst {i}" for i in range(6)]
    for text in burst:
        alice.say(text)
    alice.wait_for(lambda evs: sum(1 for e, a in evs if e == "error" and a.get("reason") == "rate_limited") >= 3,
                   timeout=RELOAD_S, what="rate_limited after the reload")
    bob.wait_for(lambda evs: ("message", say_msg("alice", burst[0])) in evs, timeout=RELOAD_S, what="the first of the burst")
    time.sleep(0.3)
    heard = [t for t in burst if ("message", say_msg("alice", t)) in bob.snapshot()]
    assert 1 <= len(heard) <= 3, heard

    # The new level reaches every logger the node had made, the sessions' included.
    dave = mesh.client("a1", room)
    dave.join("dave")
    wait_until(lambda: "session opened" in a1.log_text(100000), timeout=RELOAD_S, what="a debug line after the reload")

    for client in (alice, bob, carol):
        assert not client.disconnected.is_set(), "a client noticed the reload"
    assert {n.name: n.pid for n in (a1, a2)} == pids and a1.alive() and a2.alive(), "a node restarted"

    diff = subprocess.run([chatmesh_binary(), "check-config", "--diff", str(old), str(mesh.conf_path), "--node", "a1"],
                          capture_output=True, text=True, timeout=30)
    assert diff.returncode == 0, diff.stderr
    assert diff.stdout.splitlines() == ["[cluster] log_level: none (the --log-level flag) -> debug (live)",
                                        "[limits] text_max: 100 -> 20 (live)", "[limits] say_rate: 100000 -> 1 (live)",
                                        "[limits] say_burst: 100000 -> 2 (live)"], diff.stdout


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


def test_every_kind_of_bad_file_is_rejected_and_chat_runs_on(mesh_factory):
    """One file for each error class the loader has (ConfigParser, ConfigFile, the secret rules),
    SIGHUP to both nodes of a linked pair after each: every one is logged as FILE:LINE with the
    line at fault (0 when the file as a whole is wrong), counted as rejected on both nodes, and
    the pair runs on: no client disconnected, chat crosses a1 -> a2 and back after every one.
    Last, a file without the node's own section is not an error but a change that needs the node
    stopped: it is applied with the rest, the node runs on, and the log says to stop it."""
    from dataclasses import dataclass
    from typing import Callable

    mesh = mesh_factory(["a1", "a2"])
    a1, a2 = mesh["a1"], mesh["a2"]
    conf = mesh.conf_path
    good = conf.read_text()
    room = unique_room("reload-every-error")
    alice = mesh.client("a1", room)
    bob = mesh.client("a2", room)
    alice.join("alice")
    bob.join("bob")
    chat(alice, bob, "alice", "before the bad files")

    def line_of(text: str, line: str, nth: int = 1) -> int:
        """1-based number of the nth line of `text` that is exactly `line`."""
        return [i for i, ln in enumerate(text.split("\n"), start=1) if ln == line][nth - 1]

    def node(name: str, listen: str, mesh_address: str | None = None) -> str:
        return f"\n[node {name}]\nlisten = {listen}\n" + (f"mesh = {mesh_address}\n" if mesh_address else "")

    def tag(name: str) -> int:
        """NodeTag's 24 bits (Sources/ClusterConfig/NodeTag.swift): FNV-1a-64, xor-folded."""
        h = 0xcbf29ce484222325
        for b in name.encode():
            h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
        return (h ^ (h >> 24) ^ (h >> 48)) & 0xFFFFFF

    def same_tag_pair() -> tuple[str, str]:
        seen: dict[int, str] = {}
        for i in range(1_000_000):
            name = f"t{i}"
            if tag(name) in seen:
                return seen[tag(name)], name
            seen[tag(name)] = name
        raise AssertionError("no two names with one tag")

    a1_listen = f"127.0.0.1:{a1.port}"
    spare_a, spare_b = free_ports(2)
    secret_line = "secret = mesh-test-secret"
    far = node("a3", "192.0.2.10:6001", "192.0.2.10:7001")  # TEST-NET: a mesh that leaves the host
    key = mesh.dir / "g7.key"

    @dataclass
    class Bad:
        what: str
        text: str | bytes | None = None  # what cluster.conf holds; None: `setup` makes it
        line: int | Callable[[str], int] = 0  # the line blamed (0: the whole file), or of the text
        says: str = ""  # a part of the message
        setup: Callable[[], None] | None = None
        undo: Callable[[], None] | None = None
        key_text: bytes | None = None  # the secret file's content, mode 0600 unless key_mode
        key_mode: int = 0o600

    def tail(section: str, at: str, nth: int = 1) -> Bad:
        """A case whose text is the good file plus `section`, blamed at line `at`."""
        text = good + section
        return Bad("", text, line_of(text, at, nth))

    def case(what: str, section: str, at: str, says: str, nth: int = 1) -> Bad:
        c = tail(section, at, nth)
        c.what, c.says = what, says
        return c

    def replaced(what: str, old: str, new: str, at: str, says: str, extra: str = "") -> Bad:
        assert old in good, old
        text = good.replace(old, new) + extra
        return Bad(what, text, line_of(text, at), says)

    first_a2 = line_of(good, "[node a2]")
    t1, t2 = same_tag_pair()

    def as_directory():
        conf.unlink()
        conf.mkdir()

    def directory_back():
        conf.rmdir()

    def dir_key():
        key.mkdir()

    cases = [
        # Lines the parser cannot read.
        case("a control character", "\n[limits]\nsay_rate = 5\x01\n", "say_rate = 5\x01",
             "control character 0x01 is not allowed"),
        case("a stray carriage return", "\n[limits]\nsay_rate = 5\r6\n", "say_rate = 5\r6",
             "stray carriage return"),
        case("a line without '='", "\n[limits]\nsay_rate 5\n", "say_rate 5", "expected 'key = value'"),
        Bad("a key before any section", "say_rate = 5\n" + good, 1, "is set before any [section] header"),
        # Section headers.
        case("an empty header", "\n[]\n", "[]", "empty section header"),
        case("text after ']'", "\n[limits] fast\n", "[limits] fast", "unexpected text after ']'"),
        case("an unknown section", "\n[limit]\nsay_rate = 5\n", "[limit]", "unknown section [limit]"),
        case("a section with a name", "\n[limits fast]\n", "[limits fast]", "takes no name"),
        case("a duplicate section", "\n[cluster]\ndrain_timeout = 5000\n", "[cluster]",
             "duplicate section [cluster] (first at line 2)", nth=2),
        case("[node] without a name", "\n[node]\n", "[node]", "[node] needs a name"),
        case("an invalid node name", "\n[node a/3]\n", "[node a/3]", "invalid node name"),
        case("a duplicate node name", node("a1", f"127.0.0.1:{spare_a}"), "[node a1]",
             "duplicate node name 'a1'", nth=2),
        case("two nodes with one session id tag", node(t1, f"127.0.0.1:{spare_a}") + node(t2, f"127.0.0.1:{spare_b}"),
             f"[node {t2}]", f"nodes '{t1}'"),
        # Keys and values.
        case("a duplicate key", "mesh = 127.0.0.1:1\n", "mesh = 127.0.0.1:1",
             f"duplicate key 'mesh' in [node a2] (first set at line {first_a2 + 2})"),
        case("an empty value", "\n[limits]\nsay_rate =\n", "say_rate =", "empty value for 'say_rate'"),
        case("a number too large", "\n[limits]\nsay_rate = 99999999999\n", "say_rate = 99999999999", "is too large"),
        case("a zero", "\n[limits]\nsay_rate = 0\n", "say_rate = 0", "must be a positive integer"),
        case("a unit suffix", "\n[mesh]\nping_interval = 5s\n", "ping_interval = 5s", "without a unit suffix"),
        case("a bad on/off", "\n[recovery]\nenabled = yes\n", "enabled = yes", "must be on or off"),
        case("a bad origin", "\n[engineio]\nallowed_origins = ftp://example.org\n",
             "allowed_origins = ftp://example.org", "bad origin"),
        case("a bad address", node("a3", "127.0.0.1:99999"), "listen = 127.0.0.1:99999", "bad listen address"),
        case("a bad redis url", "\n[redis]\nurl = http://127.0.0.1:6379\n", "url = http://127.0.0.1:6379", "bad redis url"),
        replaced("a bad fanout", "fanout = mesh", "fanout = gossip", "fanout = gossip", "bad fanout"),
        replaced("secret and secret_file both", secret_line, secret_line + "\nsecret_file = g7.key",
                 "secret_file = g7.key", "are both set in [cluster]"),
        # Rules over the whole file.
        case("a node without a listen address", f"\n[node a3]\nmesh = 127.0.0.1:{spare_a}\n", "[node a3]",
             "has no listen address"),
        case("two nodes on one listen address", node("a3", a1_listen, f"127.0.0.1:{spare_a}"),
             f"listen = {a1_listen}", "is already used by the listen of node 'a1'", nth=2),
        case("a wildcard over a node's port", node("a3", f"0.0.0.0:{a1.port}", f"127.0.0.1:{spare_a}"),
             f"listen = 0.0.0.0:{a1.port}", "overlaps"),
        case("a mesh node without a mesh address", node("a3", f"127.0.0.1:{spare_a}"), "[node a3]",
             "has no mesh address"),
        replaced("fanout = redis without a url", "fanout = mesh", "fanout = redis", "fanout = redis",
                 "fanout = redis needs"),
        case("[mesh] tls = on without its files", "\n[mesh]\ntls = on\n", "tls = on", "needs tls_ca, tls_cert and tls_key"),
        case("a mesh TLS file with tls off", "\n[mesh]\ntls_ca = ca.pem\n", "tls_ca = ca.pem", "but tls is off"),
        case("missing mesh TLS files", "\n[mesh]\ntls = on\ntls_ca = nope-ca.pem\ntls_cert = nope.pem\ntls_key = nope.key\n",
             "tls_ca = nope-ca.pem", "nope-ca.pem"),
        case("a node certificate without its key", "tls_cert = a2.pem\n", "tls_cert = a2.pem", "needs 'tls_key'"),
        case("a redis TLS file with a redis:// url", "\n[redis]\nurl = redis://:pw@127.0.0.1:6379\ntls_ca = ca.pem\n",
             "tls_ca = ca.pem", "is only for TLS"),
        case("max_frame below max_payload", "\n[mesh]\nmax_frame = 1000\n", "max_frame = 1000",
             "'max_frame' in [mesh] is 1000 bytes"),
        replaced("a mesh off the host without a secret", secret_line + "\n", "", "mesh = 192.0.2.10:7001",
                 "needs 'secret = ...' or 'secret_file = PATH'", extra=far),
        replaced("a weak secret for a mesh off the host", secret_line, secret_line, secret_line,
                 "the secret is 16 characters; at least 32", extra=far),
        replaced("a placeholder secret", secret_line, "secret = change-me", "secret = change-me",
                 "placeholder 'change-me'", extra=far),
        # The file itself.
        Bad("a file without nodes", "[cluster]\nfanout = mesh\n" + secret_line + "\n", 0, "no [node NAME] section"),
        Bad("an empty file", "", 0, "no [node NAME] section"),
        Bad("a file that is not UTF-8", good.encode() + b"# caf\xe9\n", good.count("\n") + 1, "not valid UTF-8"),
        Bad("a file over 1 MiB", good + "#" * (1 << 20) + "\n", 0, "larger than 1048576 bytes"),
        Bad("a directory", None, 0, "cannot read: Is a directory", setup=as_directory, undo=directory_back),
        Bad("a missing file", None, 0, "cannot read: No such file or directory", setup=lambda: conf.unlink(missing_ok=True)),
    ]
    # The secret file ([cluster] secret_file), blamed at its line of cluster.conf.
    with_key = good.replace(secret_line, "secret_file = g7.key")
    key_line = line_of(with_key, "secret_file = g7.key")
    cases += [
        Bad("a missing secret file", with_key, key_line, f"secret_file {key}: cannot read: No such file"),
        Bad("a secret file others can read", with_key, key_line, "is readable by group or others (mode 0644)",
            key_text=b"k" * 40 + b"\n", key_mode=0o644),
        Bad("an empty secret file", with_key, key_line, "is empty", key_text=b""),
        Bad("a secret file of two lines", with_key, key_line, "holds more than one line", key_text=b"k" * 40 + b"\nmore\n"),
        Bad("a secret file that is not UTF-8", with_key, key_line, "not valid UTF-8", key_text=b"k\xff" * 20),
        Bad("a secret file that is a directory", with_key, key_line, "not a regular file", setup=dir_key, undo=key.rmdir),
        Bad("a weak secret file for a mesh off the host", with_key + far, key_line,
            "the secret is 16 characters; at least 32", key_text=b"mesh-test-secret\n"),
    ]

    started = time.monotonic()
    for count, bad in enumerate(cases, start=1):
        if key.exists() and not key.is_dir():
            key.unlink()
        if bad.key_text is not None:
            key.write_bytes(bad.key_text)
            key.chmod(bad.key_mode)
        if bad.setup:
            bad.setup()
        if isinstance(bad.text, bytes):
            conf.write_bytes(bad.text)
        elif bad.text is not None:
            conf.write_text(bad.text)
        hangup(a1, a2)
        for n in (a1, a2):
            reloaded(n, count, "rejected")
            errors = [ln for ln in n.log_text(400000).splitlines() if "reload rejected" in ln]
            assert len(errors) == count, (bad.what, n.name, errors[-3:])
            located = re.search(re.escape(str(conf)) + r":(\d+): (.*)$", errors[-1])
            assert located, (bad.what, errors[-1])
            assert int(located.group(1)) == bad.line, (bad.what, bad.line, errors[-1])
            assert bad.says in located.group(2), (bad.what, bad.says, errors[-1])
            assert n.counter("chatmesh_config_reload_total", result="applied") == 0, bad.what
        if bad.undo:
            bad.undo()
        # Crossing both ways, one direction per case each way round.
        sender, receiver, name = (alice, bob, "alice") if count % 2 else (bob, alice, "bob")
        chat(sender, receiver, name, f"still here after {bad.what}")
    took = time.monotonic() - started
    print(f"\n{len(cases)} bad files rejected by both nodes in {took:.1f} s")

    # Not an error: a file without a1 is a change a1 cannot make live (it must be stopped).
    conf.write_text(config_text([a2], fanout="mesh", secret=mesh.secret))
    if key.exists():
        key.rmdir() if key.is_dir() else key.unlink()
    hangup(a1)
    reloaded(a1, 1, "applied")
    log = a1.log_text(400000)
    assert "it leaves the cluster; stop it" in log, log[-3000:]
    assert a1.peers()[0] == ["a2"], "a1 kept its link to a2"
    chat(alice, bob, "alice", "a1 still runs after leaving the file")
    chat(bob, alice, "bob", "and a2 still hears it")
    for client in (alice, bob):
        assert not client.disconnected.is_set(), "a client noticed a reload"
    assert a1.alive() and a2.alive()
    assert a1.counter("chatmesh_config_reload_total", result="rejected") == len(cases)
