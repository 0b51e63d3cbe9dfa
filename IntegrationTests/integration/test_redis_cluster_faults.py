"""chatmesh in sharded mode while the Redis Cluster under it changes (3 primaries + 3
replicas, cluster-node-timeout 1000 ms, password on; 3 chatmesh nodes): a primary holding a
busy room is killed with SIGKILL and its replica promoted; a busy room's slot is moved to
another primary with `redis-cli --cluster reshard`; two of the three shards stop entirely
(CLUSTERDOWN on the third); two primaries send each other MOVED for one slot (a loop made with
CLUSTER SETSLOT). Under traffic each time, every acknowledged say reaches every member: nothing
lost within the buffer bound (`buffer_ms = 10000`: the outages here last 2-5 s), duplicates
counted and printed; no node crashes.

One Redis Cluster per module; every test puts it back (killed and stopped nodes started
again, rejoining as replicas) so that no test depends on another's order."""

from __future__ import annotations

import threading
import time

import pytest

from chatmesh_testkit import record_figure
from harness.clients import PacedSender
from redis_cluster_testkit import cluster_module, key_slot, room_in_slots, sigterm_all
from redis_testkit import M, join_msg, numbered, order_report, say_msg, wait_until

NODES = ("a1", "a2", "a3")
BUFFER_MS = 10000
RESUME_LIMIT_S = 5.0
REDIS_METRICS = ("chatmesh_redis_reconnects_total", "chatmesh_redis_dropped_total",
                 "chatmesh_redis_moved_total", "chatmesh_redis_ask_total",
                 "chatmesh_redis_sunsubscribed_total", "chatmesh_redis_cluster_retries_total",
                 "chatmesh_redis_topology_refresh_total")


@pytest.fixture(scope="module")
def env(request):
    make_redis_cluster, make_chat, _ = cluster_module(request)
    rc = make_redis_cluster()
    chat = make_chat(rc, mode="sharded", redis_extra={"buffer_ms": BUFFER_MS})
    return rc, chat


@pytest.fixture(autouse=True)
def healthy(env):
    """Every test starts on a healthy Redis Cluster and ready nodes."""
    rc, chat = env
    rc.wait_ok(20)
    for n in chat.nodes.values():
        n.wait_healthy(timeout=15)
    yield
    # A test that failed half-way may leave redis-servers stopped or a setting changed: put
    # the cluster back so that the next test starts from the same place.
    for n in rc.nodes:
        if not n.alive():
            n.start(10.0)
        n.command("CONFIG", "SET", "cluster-allow-pubsubshard-when-down", "yes")
    for n in chat.nodes.values():
        assert n.alive(), f"{n.name} died:\n{n.log_text()}"


class HealthWatch(threading.Thread):
    """Polls every node's /healthz until stopped: which nodes were ever not ready, and when
    each was last seen turning ready again."""

    def __init__(self, chat):
        super().__init__(daemon=True)
        self.chat = chat
        self.not_ready: dict[str, dict] = {}
        self.ready_again: dict[str, float] = {}
        self._halt = threading.Event()
        self.start()

    def run(self):
        while not self._halt.is_set():
            for n in self.chat.nodes.values():
                try:
                    status, body = n.health()
                except OSError:
                    continue
                if status != 200:
                    self.not_ready.setdefault(n.name, body)
                    self.ready_again.pop(n.name, None)
                elif n.name in self.not_ready and n.name not in self.ready_again:
                    self.ready_again[n.name] = time.monotonic()
            self._halt.wait(0.05)

    def stop(self):
        self._halt.set()
        self.join(timeout=5)


def metric_deltas(chat, before: dict) -> dict:
    after = {n: chat[n].metrics() for n in chat.nodes}
    return {n: {name.removeprefix("chatmesh_redis_").removesuffix("_total"):
                after[n].total(name) - before[n].total(name) for name in REDIS_METRICS}
            for n in chat.nodes}


def busy_room(chat, room: str, sender_node: str = "a1"):
    """alice on `sender_node` (the sender, who also gets her own says through Redis) and a
    receiver on each other node, all joined and seen by each other."""
    others = [n for n in NODES if n != sender_node]
    alice = chat.client(sender_node, room)
    alice.join("alice")
    receivers = []
    for node, name in zip(others, ("bob", "carol")):
        c = chat.client(node, room)
        c.join(name)
        alice.wait_for(lambda evs, name=name: (M, join_msg(name)) in evs, what=f"{name}'s join")
        receivers.append(c)
    receivers[0].wait_for(lambda evs: (M, join_msg("carol")) in evs, what="carol's join")
    return alice, receivers


def first_arrival_at_or_after(clients, index: int, t_from: float, limit: float) -> dict:
    """Seconds from t_from until each client received a say alice:n with n >= index."""
    seen: dict[int, float] = {}
    deadline = t_from + limit + 5
    while len(seen) < len(clients) and time.monotonic() < deadline:
        for i, c in enumerate(clients):
            if i not in seen and any(n >= index for n in numbered(c, "alice")):
                seen[i] = time.monotonic() - t_from
        time.sleep(0.01)
    return seen


def delivery_report(sent: int, clients: dict) -> dict:
    """Per client: missing (lost), duplicates, and whether the first copies came in order."""
    out = {}
    for name, c in clients.items():
        got = numbered(c, "alice")
        firsts, seen = [], set()
        for n in got:
            if n not in seen:
                seen.add(n)
                firsts.append(n)
        out[name] = {"lost": len(set(range(sent)) - seen), "duplicated": len(got) - len(seen),
                     "first_copies_in_order": firsts == sorted(firsts),
                     "report": order_report(got, sent)}
    return out


def wait_complete(sent: int, clients) -> None:
    try:
        wait_until(lambda: all(set(numbered(c, "alice")) >= set(range(sent)) for c in clients),
                   timeout=15, interval=0.1, what=f"{sent} says at every member")
    except AssertionError:
        pass  # reported by the caller with the counts
    time.sleep(0.3)  # late duplicates would show now


def test_primary_killed_under_traffic_replica_promoted_nothing_lost(env):
    rc, chat = env
    victim_shard = rc.shards()[1]
    victim = victim_shard.primary
    room = room_in_slots("failover", victim_shard.slots())
    calm = room_in_slots("calm", rc.shards()[2].slots())  # a room on another shard
    alice, (bob, carol) = busy_room(chat, room, "a1")
    calm_clients = [chat.client("a2", calm), chat.client("a3", calm)]
    calm_clients[0].join("dave")
    calm_clients[1].join("erin")
    calm_clients[0].wait_for(lambda evs: (M, join_msg("erin")) in evs, what="erin's join")
    wait_until(lambda: victim.shard_numsub(room) == 3, what="3 nodes subscribed on the victim")
    before = {n: chat[n].metrics() for n in chat.nodes}

    sender = PacedSender(alice, "alice", interval=0.01, acked=True)
    sender.start()
    time.sleep(1.0)
    watch = HealthWatch(chat)
    failover = rc.kill_primary(victim)
    promoted_at = failover["promoted_at"]
    index_at_promotion = sender.sent
    resumed = first_arrival_at_or_after([bob, carol, alice], index_at_promotion, promoted_at,
                                        RESUME_LIMIT_S)
    calm_clients[1].say("the other shard")  # unaffected meanwhile
    time.sleep(1.0)
    sent = sender.stop()
    wait_complete(sent, [bob, carol, alice])
    watch.stop()
    calm_clients[0].wait_for(lambda evs: (M, say_msg("erin", "the other shard")) in evs,
                             what="a say on the other shard")
    members = {"bob@a2": bob, "carol@a3": carol, "alice@a1": alice}
    report = delivery_report(sent, members)
    deltas = metric_deltas(chat, before)
    new = failover["new"]
    # Every say missing anywhere: when it was sent, relative to the kill, and who got it.
    missing = sorted(set(range(sent)) - set.intersection(*(set(numbered(c, "alice"))
                                                             for c in members.values())))
    missing_detail = [(i, f"{(sender.sent_at[i] - failover['killed_at']) * 1000:+.0f} ms",
                       [w for w, c in members.items() if i in numbered(c, "alice")])
                      for i in missing[:20]]
    record_figure("redis cluster failover",
                  f"kill -9 of primary :{victim.port} (slots {victim_shard.label}) under 100 says/s; "
                  f"replica :{new.port} promoted after {failover['seconds']:.2f}s; delivery of says "
                  f"sent after the promotion resumed after "
                  f"{ {k: round(v, 2) for k, v in resumed.items()} } s (0 bob@a2, 1 carol@a3, "
                  f"2 alice@a1); {sent} says, {sender.ok_acks()} acked ok; "
                  + "; ".join(f"{k}: lost {v['lost']}, duplicated {v['duplicated']}"
                              for k, v in report.items())
                  + (f"; missing says (sent relative to the kill, got it): {missing_detail}"
                     if missing else ""))
    record_figure("redis cluster failover", f"not ready during it: {sorted(watch.not_ready)} "
                  f"(ready again {[(k, round(v - promoted_at, 2)) for k, v in watch.ready_again.items()]} "
                  f"s after the promotion); metric deltas {deltas}")
    restarted = rc.restart(victim)
    record_figure("redis cluster failover", f"old primary :{victim.port} restarted, back as a "
                  f"replica of :{new.port}, cluster ok after {restarted:.2f}s")
    assert len(resumed) == 3 and max(resumed.values()) <= RESUME_LIMIT_S, \
        f"delivery resumed after {resumed} s of the promotion (limit {RESUME_LIMIT_S})"
    assert sender.ok_acks() == sent, "every say was acked ok (buffered, not refused)"
    for who, r in report.items():
        assert r["lost"] == 0, f"{who}: {r['report']}; missing says (sent relative to the " \
                               f"kill, who got them): {missing_detail}"
        assert r["first_copies_in_order"], f"{who}: {r['report']}"
    for n, d in deltas.items():
        assert d["dropped"] == 0, deltas


def test_slot_of_a_busy_room_resharded_under_traffic_nothing_lost(env):
    rc, chat = env
    shards = rc.shards()
    source, target = shards[0].primary, shards[2].primary
    moving = rc.reshard_slots(source, 100)
    room = room_in_slots("reshard", moving)
    staying = room_in_slots("stay", [s for s in shards[0].slots() if s not in set(moving)])
    alice, (bob, carol) = busy_room(chat, room, "a2")
    stay = [chat.client("a1", staying), chat.client("a3", staying)]
    stay[0].join("dave")
    stay[1].join("erin")
    stay[0].wait_for(lambda evs: (M, join_msg("erin")) in evs, what="erin's join")
    wait_until(lambda: source.shard_numsub(room) == 3, what="3 nodes subscribed on the source")
    before = {n: chat[n].metrics() for n in chat.nodes}
    target_before = target.command_calls("spublish")

    sender = PacedSender(alice, "alice", interval=0.01, acked=True)
    sender.start()
    time.sleep(1.0)
    took = rc.reshard(source, target, len(moving))
    moved_at = time.monotonic()
    assert key_slot(room) in {s for sh in rc.shards() if sh.primary is target for s in sh.slots()}
    resubscribed = None
    try:
        wait_until(lambda: target.shard_numsub(room) == 3, timeout=5, interval=0.01,
                   what=f"all 3 nodes subscribed to {room} on the new owner :{target.port}")
        resubscribed = time.monotonic() - moved_at
    finally:
        stay[1].say("same shard, slot not moved")
        time.sleep(1.0)
        sent = sender.stop()
        wait_complete(sent, [bob, carol, alice])
    stay[0].wait_for(lambda evs: (M, say_msg("erin", "same shard, slot not moved")) in evs,
                     what="a say in a room whose slot stayed")
    report = delivery_report(sent, {"bob@a3": bob, "carol@a1": carol, "alice@a2": alice})
    deltas = metric_deltas(chat, before)
    on_target = target.command_calls("spublish") - target_before
    record_figure("redis cluster reshard",
                  f"redis-cli --cluster reshard of {len(moving)} slots ({moving[0]}-{moving[-1]}, "
                  f"the busy room's slot {key_slot(room)} among them) :{source.port} -> "
                  f":{target.port} in {took:.2f}s under 100 says/s; all 3 nodes subscribed on the "
                  f"new owner {resubscribed if resubscribed is None else round(resubscribed, 2)}s "
                  f"later; {on_target} SPUBLISH on the new owner; {sent} says; "
                  + "; ".join(f"{k}: lost {v['lost']}, duplicated {v['duplicated']}"
                              for k, v in report.items()) + f"; metric deltas {deltas}")
    assert source.shard_numsub(room) == 0
    assert on_target > 0
    # Every node learned that the slot moved: Redis told its subscriber (an unsolicited
    # sunsubscribe), or a say it published met MOVED first and it re-read the map and moved its
    # subscription itself (then the sunsubscribe it gets answers its own command).
    for n, d in deltas.items():
        assert d["sunsubscribed"] + d["moved"] >= 1, deltas
    assert sender.ok_acks() == sent, "every say was acked ok"
    for who, r in report.items():
        assert r["lost"] == 0, f"{who}: {r['report']}"
        assert r["first_copies_in_order"], f"{who}: {r['report']}"
    for n, d in deltas.items():
        assert d["dropped"] == 0, deltas


def test_clusterdown_keeps_nodes_up_and_they_recover(env):
    """Two of three shards stop entirely (primary and replica, SIGTERM): the third shard's
    primary answers CLUSTERDOWN to SPUBLISH and SSUBSCRIBE (cluster-allow-pubsubshard-when-down
    set to no on it for this test). The nodes stay up, log why (the one that publishes there:
    CLUSTERDOWN, counted; all: the unreachable nodes), say not ready; says made meanwhile
    in a room of the surviving shard are kept (within the buffer bound) and delivered once the
    stopped nodes are back; then every shard serves again."""
    rc, chat = env
    shards = rc.shards()
    survivor = shards[0]
    room = room_in_slots("down", survivor.slots())
    alice, (bob, carol) = busy_room(chat, room, "a1")
    before = {n: chat[n].metrics() for n in chat.nodes}
    log_sizes = {n: len(chat[n].log_text(10 ** 7)) for n in chat.nodes}
    stopped = [n for s in shards[1:] for n in (s.primary, *s.replicas)]
    # Redis 7 serves a shard's own channels even while the cluster is down
    # (cluster-allow-pubsubshard-when-down yes); with no, the survivor answers CLUSTERDOWN.
    for n in (survivor.primary, *survivor.replicas):
        assert n.command("CONFIG", "SET", "cluster-allow-pubsubshard-when-down", "no") == "OK"
    watch = HealthWatch(chat)
    t0 = time.monotonic()
    sigterm_all(stopped)
    wait_until(lambda: survivor.primary.cluster_info().get("cluster_state") == "fail",
               timeout=10, interval=0.05, what="CLUSTERDOWN on the surviving primary")
    t_fail = time.monotonic() - t0
    during = 20
    for i in range(during):
        alice.say(f"alice:{i}")
    time.sleep(1.5)  # the nodes meet CLUSTERDOWN and retry for a while
    logs = {n: chat[n].log_text(10 ** 7)[log_sizes[n]:] for n in chat.nodes}
    alive = {n: chat[n].alive() for n in chat.nodes}
    t_restart = time.monotonic()
    for n in stopped:
        n.start(10.0)
    back = rc.wait_ok(20)
    t_back = time.monotonic()
    try:
        for n in chat.nodes.values():
            n.wait_healthy(timeout=10)
        t_ready = time.monotonic() - t_back
    finally:
        watch.stop()
    wait_complete(during, [bob, carol, alice])
    report = delivery_report(during, {"bob@a2": bob, "carol@a3": carol, "alice@a1": alice})
    deltas = metric_deltas(chat, before)
    reason = next((l for l in logs["a1"].splitlines() if "clusterdown" in l.lower()), None)
    record_figure("redis cluster down",
                  f"2 of 3 shards stopped: CLUSTERDOWN on :{survivor.primary.port} after "
                  f"{t_fail:.2f}s; not ready: {sorted(watch.not_ready)}; a1 logged: {reason}; "
                  f"the 4 nodes restarted after {t_restart - t0:.2f}s, cluster ok {back:.2f}s "
                  f"later, chatmesh ready {t_ready:.2f}s after that; {during} says made during "
                  f"CLUSTERDOWN: " + "; ".join(f"{k}: lost {v['lost']}, duplicated {v['duplicated']}"
                                               for k, v in report.items())
                  + f"; metric deltas {deltas}")
    assert all(alive.values()), alive
    assert set(watch.not_ready) == set(NODES), f"not ready only on {sorted(watch.not_ready)}"
    # a1 published into the surviving shard and met CLUSTERDOWN; every node met the stopped ones.
    assert reason is not None, f"a1 did not log CLUSTERDOWN:\n{logs['a1'][-3000:]}"
    assert deltas["a1"]["cluster_retries"] >= 1, deltas
    for n, text in logs.items():
        assert "unreachable" in text.lower(), f"{n} did not log the stopped nodes:\n{text[-3000:]}"
    for who, r in report.items():
        assert r["lost"] == 0, f"{who}: {r['report']}"
    # Every shard serves again: a room on each, across nodes.
    for port, rs in rc.rooms_per_shard("after", per_shard=1).items():
        a, b = chat.client("a2", rs[0]), chat.client("a3", rs[0])
        a.join("a")
        b.join("b")
        a.wait_for(lambda evs: (M, join_msg("b")) in evs, what="b's join")
        b.say("back")
        a.wait_for(lambda evs: (M, say_msg("b", "back")) in evs, what=f"a say on shard :{port}")


def test_moved_loop_is_bounded_logged_and_the_says_wait(env):
    """A MOVED loop made by hand: the room's primary is told (CLUSTER SETSLOT <slot> NODE) that
    another primary owns the slot, which still believes the first one does: each answers MOVED
    to the other. The node follows a bounded number of redirects, logs the loop, counts it,
    keeps the says and stays up; once the slot is given back they are delivered."""
    rc, chat = env
    shard, other = rc.shards()[0], rc.shards()[1]
    owner, wrong = shard.primary, other.primary
    room = room_in_slots("loop", shard.slots())
    slot = key_slot(room)
    alice, (bob, carol) = busy_room(chat, room, "a1")
    before = {n: chat[n].metrics() for n in chat.nodes}
    log_size = len(chat["a1"].log_text(10 ** 7))
    assert owner.command("CLUSTER", "SETSLOT", slot, "NODE", wrong.node_id) == "OK"
    try:
        assert "MOVED" in owner.cli("SPUBLISH", room, "probe").stdout
        assert "MOVED" in wrong.cli("SPUBLISH", room, "probe").stdout
        t0 = time.monotonic()
        for i in range(5):
            alice.say(f"alice:{i}")
        t_loop = None
        try:
            wait_until(lambda: chat["a1"].metrics().total("chatmesh_redis_redirect_loops_total")
                       > before["a1"].total("chatmesh_redis_redirect_loops_total"),
                       timeout=5, what="a1 counting the MOVED loop")
            t_loop = time.monotonic() - t0
        except AssertionError:
            pass  # reported below, with what happened instead
        time.sleep(0.5)
        log = chat["a1"].log_text(10 ** 7)[log_size:]
        line = next((l for l in log.splitlines() if "moved loop" in l.lower()), None)
        moved_lines = {n: chat[n].log_text(10 ** 7).count("redis slot moved") for n in chat.nodes}
        got_during = {w: numbered(c, "alice") for w, c in (("bob", bob), ("carol", carol))}
        alive = {n: chat[n].alive() for n in chat.nodes}
    finally:
        assert owner.command("CLUSTER", "SETSLOT", slot, "NODE", owner.node_id) == "OK"
    t_back = time.monotonic()
    rc.wait_ok(10)
    wait_complete(5, [bob, carol, alice])
    delivered = time.monotonic() - t_back
    report = delivery_report(5, {"bob@a2": bob, "carol@a3": carol, "alice@a1": alice})
    deltas = metric_deltas(chat, before)
    record_figure("redis cluster MOVED loop",
                  f"slot {slot} of :{owner.port} pointed at :{wrong.port} and back: a1 counted the "
                  f"loop after {t_loop if t_loop is None else round(t_loop, 2)}s and logged: {line}; "
                  f"'redis slot moved' lines logged per node: {moved_lines}; during it the others got "
                  f"{got_during}; after the slot was given back the 5 says arrived within "
                  f"{delivered:.2f}s: " + "; ".join(f"{k}: lost {v['lost']}, duplicated "
                                                   f"{v['duplicated']}" for k, v in report.items())
                  + f"; metric deltas {deltas}")
    assert all(alive.values()), alive
    for who, r in report.items():
        assert r["lost"] == 0, f"{who}: {r['report']}"
        assert r["first_copies_in_order"], f"{who}: {r['report']}"
    assert deltas["a1"]["moved"] >= 2, deltas
    assert t_loop is not None and line is not None, \
        f"a1 neither counted (chatmesh_redis_redirect_loops_total) nor logged a MOVED loop in 5 s; " \
        f"'redis slot moved' lines per node {moved_lines}; a1's log:\n{log[-2000:]}"
    assert max(moved_lines.values()) < 200, f"the loop flooded the logs: {moved_lines}"
