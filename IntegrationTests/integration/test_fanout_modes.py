"""The same cluster tests in both fanout modes, and in mesh mode with TLS on. The cluster.conf
files are identical except for the `fanout =` line: all list a listen and a mesh address per
node and the same [redis] section; in mesh mode no redis-server runs at all (its port stays
closed), so any traffic that crossed nodes went over the mesh. mesh-tls runs 3 nodes with
`[mesh] tls = on` (certificates from `chatmesh gen-certs`): the tests use a1 and a2, and a3
keeps its two TLS links up beside them.

Per mode: cross-node join / say / quit (WebSocket and long-polling clients), room isolation,
and 3 senders x 1,000 says delivered complete and in per-sender order to a receiver on each
node. Each mode stays under 30 s."""

from __future__ import annotations

import time

import pytest

from harness.clients import blast
from redis_testkit import (M, RedisServer, join_msg, module_resources, numbered, order_report,
                           quit_msg, say_msg, says, unique_room, wait_until)

MODE_BUDGET_S = 30.0


class Mode:
    """`name`: the fanout (mesh or redis); `label`: the test id (mesh-tls too)."""

    def __init__(self, name, label, cluster, redis, t0):
        self.name, self.label, self.cluster, self.redis, self.t0 = name, label, cluster, redis, t0


@pytest.fixture(scope="module", params=["mesh", "redis", "mesh-tls"])
def mode(request):
    t0 = time.monotonic()
    make_redis, make_cluster = module_resources(request)
    tls = request.param == "mesh-tls"
    fanout = "mesh" if tls else request.param
    if request.param == "redis":
        redis = make_redis()
        url = redis.url
    else:
        redis = None
        url = RedisServer().url  # a free port where nothing listens: mesh mode never uses it
    names = ("a1", "a2", "a3") if tls else ("a1", "a2")
    cluster = make_cluster(fanout, redis_url=url, names=names, tls=tls)
    if tls:
        assert "tls = on" in cluster.conf_path.read_text()
    print(f"\n[{request.param}] {len(names)} nodes up in {time.monotonic() - t0:.2f}s "
          f"({'redis-server :' + str(redis.port) if redis else 'no redis-server'})")
    return Mode(fanout, request.param, cluster, redis, t0)


def settle(earlier, later_name: str):
    """Waits until `earlier` (a member on the other node) saw `later_name`'s join: from then
    on both nodes know the room has members on the other (mesh: SUB before PUB on one link;
    redis: the echo proves the SUBSCRIBE)."""
    earlier.wait_for(lambda evs: (M, join_msg(later_name)) in evs, what=f"{later_name}'s join")


def test_configs_differ_only_in_the_fanout_line(mode):
    text = mode.cluster.config_text()
    other = "redis" if mode.name == "mesh" else "mesh"
    mode.cluster.fanout = other
    try:
        other_text = mode.cluster.config_text()
    finally:
        mode.cluster.fanout = mode.name
    diff = [(a, b) for a, b in zip(text.splitlines(), other_text.splitlines()) if a != b]
    assert diff == [(f"fanout = {mode.name}", f"fanout = {other}")]
    assert "[redis]" in text and text.count("mesh = 127.0.0.1:") == len(mode.cluster.names)
    assert mode.cluster.conf_path.read_text() == text
    for n in mode.cluster.nodes.values():
        h = n.healthz()
        if mode.name == "redis":
            assert h["redis"] == "up" and "mesh" not in h, h
        else:
            assert "redis" not in h and h["mesh"]["peers_up"], h


def test_cross_node_join_say_quit(mode):
    c = mode.cluster
    room = unique_room("xnode")
    alice = c.client("a1", room)
    bob = c.client("a2", room, transports=("polling",))
    carol = c.client("a2", room)
    alice.join("alice")
    bob.join("bob")
    settle(alice, "bob")
    carol.join("carol")
    alice.wait_for(lambda evs: (M, join_msg("carol")) in evs, what="carol's join")
    alice.say("from a1")
    bob.wait_for(lambda evs: (M, say_msg("alice", "from a1")) in evs, what="alice's say")
    carol.wait_for(lambda evs: (M, say_msg("alice", "from a1")) in evs, what="alice's say")
    bob.say("from a2 (polling)")
    for cl in (alice, carol):
        cl.wait_for(lambda evs: (M, say_msg("bob", "from a2 (polling)")) in evs, what="bob's say")
    carol.disconnect()
    alice.wait_for(lambda evs: (M, quit_msg("carol")) in evs, what="carol's quit")
    bob.wait_for(lambda evs: (M, quit_msg("carol")) in evs, what="carol's quit")
    time.sleep(0.2)  # anything extra (a duplicate) would have arrived by now
    tail = [(M, say_msg("alice", "from a1")), (M, say_msg("bob", "from a2 (polling)")),
            (M, quit_msg("carol"))]
    assert alice.snapshot() == [(M, join_msg("alice")), (M, join_msg("bob")),
                                (M, join_msg("carol"))] + tail
    assert bob.snapshot() == [(M, join_msg("bob")), (M, join_msg("carol"))] + tail
    assert carol.snapshot() == [(M, join_msg("carol")), (M, say_msg("alice", "from a1")),
                                (M, say_msg("bob", "from a2 (polling)"))]
    print(f"[{mode.label}] join / say / quit crossed a1 <-> a2 (websocket and polling clients), "
          f"each exactly once")


def test_rooms_are_isolated(mode):
    c = mode.cluster
    r1, r2 = unique_room("iso1"), unique_room("iso2")
    x1, x2 = c.client("a1", r1), c.client("a2", r1)
    y1, y2 = c.client("a1", r2), c.client("a2", r2)
    x1.join("x1")
    y2.join("y2")
    x2.join("x2")
    y1.join("y1")
    settle(x1, "x2")
    settle(y2, "y1")
    x1.say("r1 from a1")
    y2.say("r2 from a2")
    x2.say("r1 from a2")
    y1.say("r2 from a1")
    r1_says = {("x1", "r1 from a1"), ("x2", "r1 from a2")}
    r2_says = {("y2", "r2 from a2"), ("y1", "r2 from a1")}
    for cl in (x1, x2):
        wait_until(lambda cl=cl: set(says(cl)) >= r1_says, what="r1's says")
    for cl in (y1, y2):
        wait_until(lambda cl=cl: set(says(cl)) >= r2_says, what="r2's says")
    time.sleep(0.3)  # anything misrouted would have arrived by now
    for cl in (x1, x2):
        assert sorted(says(cl)) == sorted(r1_says), says(cl)
        assert {a["data"]["username"] for e, a in cl.snapshot()} <= {"x1", "x2"}
    for cl in (y1, y2):
        assert sorted(says(cl)) == sorted(r2_says), says(cl)
        assert {a["data"]["username"] for e, a in cl.snapshot()} <= {"y1", "y2"}
    print(f"[{mode.label}] r1 and r2 (members on both nodes) each saw only their own 2 says")


def test_three_senders_thousand_says_each_complete_and_in_order(mode):
    c = mode.cluster
    room = unique_room("load")
    per_sender, names = 1000, ["s1", "s2", "s3"]
    senders = [c.client(node, room) for node in ("a1", "a2", "a1")]
    receivers = [c.client("a1", room), c.client("a2", room)]
    senders[0].join("s1")
    senders[1].join("s2")
    settle(senders[0], "s2")
    senders[2].join("s3")
    receivers[0].join("r1")
    receivers[1].join("r2")
    for client, later in ((senders[0], ("s3", "r1", "r2")), (senders[1], ("s3", "r1", "r2")),
                          (receivers[0], ("r2",))):
        for who in later:
            client.wait_for(lambda evs, who=who: (M, join_msg(who)) in evs, what=f"{who}'s join")
    assert all(s.transport() == "websocket" for s in senders + receivers)

    t0 = time.monotonic()
    t_sent = blast(dict(zip(names, senders)), per_sender)
    total = per_sender * len(names)
    try:
        wait_until(lambda: all(len(says(r, set(names))) >= total for r in receivers),
                   timeout=20, interval=0.05, what=f"{total} says at both receivers")
    finally:
        counts = [len(says(r, set(names))) for r in receivers]
        print(f"[{mode.label}] receivers r1@a1, r2@a2 got {counts} of {total}")
        if counts != [total, total]:
            # Say why: a lost Redis connection (redelivery, loss), a mesh link drop, ...
            for name, node in c.nodes.items():
                print(f"--- {name} log ---\n{node.log_text()}")
            if mode.redis:
                print(f"--- redis-server log ---\n{mode.redis.log_text()}")
    t_all = time.monotonic() - t0
    time.sleep(0.2)
    for i, r in enumerate(receivers):
        for s in names:
            got = numbered(r, s)
            assert got == list(range(per_sender)), f"r{i + 1} from {s}: " + \
                order_report(got, per_sender)
        assert len(says(r)) == total
    if mode.name == "redis":
        # Redis gives every node one order per room: both receivers saw the same sequence.
        assert says(receivers[0]) == says(receivers[1])
    print(f"[{mode.label}] {total} says (3 websocket senders, 2 on a1, 1 on a2) sent in "
          f"{t_sent:.2f}s; both receivers complete and in per-sender order after {t_all:.2f}s "
          f"({total * 2 / t_all:.0f} deliveries/s)")


def test_mode_within_budget(mode):
    elapsed = time.monotonic() - mode.t0
    print(f"[{mode.label}] the whole mode took {elapsed:.2f}s")
    for n in mode.cluster.nodes.values():
        assert n.alive()
        n.healthz()
    assert elapsed < MODE_BUDGET_S
