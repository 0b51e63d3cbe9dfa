"""Redis outages: a node whose Redis is unreachable at start still starts (not ready until
Redis answers); a Redis restart during traffic loses nothing: the nodes reconnect and
resubscribe, and every say acked during the outage reaches the other node afterwards, in
order, exactly once. No node crashes."""

from __future__ import annotations

import signal
import time

from harness.clients import PacedSender
from redis_testkit import (M, cluster_factory, join_msg, numbered, order_report,  # noqa: F401
                           redis_factory, say_msg, unique_room, wait_until)

OUTAGE_S = 3.0
RESUBSCRIBE_LIMIT_S = 5.0


def test_node_starts_without_redis_and_becomes_ready_when_redis_starts(redis_factory,
                                                                        cluster_factory):
    redis = redis_factory(start=False)  # a port nobody listens on yet
    cluster = cluster_factory("redis", redis=redis, start=False)
    cluster.spawn()
    for n in cluster.nodes.values():
        status, body = n.wait_listening()
        assert status == 503, (n.name, status, body)
        assert body["status"] == "not_ready" and body["redis"] == "down", body
        assert n.metrics().get("chatmesh_redis_up") == 0
    # Clients are served meanwhile; a join made now is kept and published once Redis is up.
    early = cluster.client("a1", unique_room("early"))
    early.join("early", wait=False)
    time.sleep(2.0)  # several failed attempts: the node keeps retrying and keeps running
    for n in cluster.nodes.values():
        assert n.alive(), n.log_text()
        status, body = n.health()
        assert status == 503 and body["redis"] == "down", body
    assert "redis unreachable" in cluster["a1"].log_text()

    t0 = time.monotonic()
    redis.start()
    t_redis = time.monotonic() - t0
    ready = {}
    for n in cluster.nodes.values():
        body = n.wait_healthy(timeout=10)
        ready[n.name] = time.monotonic() - t0
        assert body["status"] == "ok" and body["redis"] == "up", body
        assert n.metrics().get("chatmesh_redis_up") == 1
    print(f"\nRedis unreachable for ~2 s at start: both nodes answered /healthz 503 not_ready "
          f"(redis=down); redis-server up after {t_redis:.2f}s; /healthz 200 after "
          f"{ready} s (from redis-server start)")
    assert max(ready.values()) < 5.5

    early.wait_for(lambda evs: (M, join_msg("early")) in evs, timeout=5,
                   what="the join made while Redis was down")
    room = unique_room("afterstart")
    a = cluster.client("a1", room)
    b = cluster.client("a2", room)
    a.join("a")
    b.join("b")
    a.wait_for(lambda evs: (M, join_msg("b")) in evs, what="b's join from a2")
    wait_until(lambda: redis.numsub(room) == 2, what="both nodes subscribed")
    a.say("hello")
    b.wait_for(lambda evs: (M, say_msg("a", "hello")) in evs, what="a say across nodes")


def test_redis_restart_during_traffic_loses_nothing(redis_factory, cluster_factory):
    redis = redis_factory()
    cluster = cluster_factory("redis", redis=redis)
    room = unique_room("outage")
    alice = cluster.client("a1", room)  # the sender (gets its own says through the echo)
    bob = cluster.client("a2", room)    # the receiver on the other node
    alice.join("alice")
    bob.join("bob")
    alice.wait_for(lambda evs: (M, join_msg("bob")) in evs, what="bob's join")
    wait_until(lambda: redis.numsub(room) == 2, what="both nodes subscribed")
    before = {n: cluster[n].metrics() for n in cluster.nodes}

    sender = PacedSender(alice, "alice", interval=0.01, acked=True)
    sender.start()
    time.sleep(1.0)

    t_down = time.monotonic()
    rc = redis.stop(signal.SIGTERM)
    t_stopped = time.monotonic()
    # During the outage: both nodes notice and report not ready; the sender keeps going.
    seen_down = set()
    while time.monotonic() - t_down < OUTAGE_S:
        for n in cluster.nodes.values():
            status, body = n.health()
            if status == 503 and body["redis"] == "down":
                seen_down.add(n.name)
        time.sleep(0.05)
    t_restart = time.monotonic()
    redis.start()
    t_up = time.monotonic()
    outage_says = sender.sent_between(t_stopped, t_up)

    ready, resubscribed = {}, None
    while len(ready) < 2 or resubscribed is None:
        now = time.monotonic()
        assert now - t_up < 15, f"not recovered 15 s after the restart: ready {ready}, " \
                                f"NUMSUB {redis.numsub(room)}"
        for n in cluster.nodes.values():
            if n.name not in ready and n.health()[0] == 200:
                ready[n.name] = now - t_up
        if resubscribed is None and redis.numsub(room) == 2:
            resubscribed = now - t_up
        time.sleep(0.02)
    time.sleep(1.0)  # traffic goes on after the restart
    sent = sender.stop()

    def complete():
        return len(numbered(bob, "alice")) >= sent and len(numbered(alice, "alice")) >= sent

    try:
        wait_until(complete, timeout=10, interval=0.1, what=f"{sent} says at both clients")
    except AssertionError:
        pass  # reported below with the counts
    time.sleep(0.3)  # late duplicates would show now
    got_bob, got_alice = numbered(bob, "alice"), numbered(alice, "alice")
    after = {n: cluster[n].metrics() for n in cluster.nodes}

    def delta(node, name):
        return (after[node].get(name) or 0) - (before[node].get(name) or 0)

    print(f"\nredis-server SIGTERM (exit {rc}) for {t_restart - t_down:.2f}s, restarted on the "
          f"same port in {t_up - t_restart:.2f}s; nodes saw the outage: {sorted(seen_down)}")
    print(f"after the restart: /healthz 200 after {ready} s; PUBSUB NUMSUB {room} back to 2 "
          f"after {resubscribed:.2f}s")
    print(f"says: {sent} sent ({outage_says} while Redis was down), {sender.ok_acks()} acked ok")
    print(f"bob@a2:   {order_report(got_bob, sent)}")
    print(f"alice@a1: {order_report(got_alice, sent)}")
    print("metric deltas: " + ", ".join(
        f"{n}: reconnects {delta(n, 'chatmesh_redis_reconnects_total'):.0f}, published "
        f"{delta(n, 'chatmesh_redis_published_total'):.0f}, dropped "
        f"{delta(n, 'chatmesh_redis_dropped_total'):.0f}, buffered now "
        f"{after[n].get('chatmesh_redis_buffered')}" for n in cluster.nodes))

    assert seen_down == {"a1", "a2"}, "both nodes should report redis=down during the outage"
    assert outage_says > 200, "the sender should have kept saying during the outage"
    assert resubscribed <= RESUBSCRIBE_LIMIT_S and max(ready.values()) <= RESUBSCRIBE_LIMIT_S
    assert sender.ok_acks() == sent, "every say was acked ok (buffered, not refused)"
    assert got_bob == list(range(sent)), f"bob@a2: {order_report(got_bob, sent)}"
    assert got_alice == list(range(sent)), f"alice@a1: {order_report(got_alice, sent)}"
    for n in cluster.nodes.values():
        assert n.alive(), f"{n.name} died:\n{n.log_text()}"
        assert n.healthz()["redis"] == "up"
        assert delta(n.name, "chatmesh_redis_reconnects_total") >= 2  # subscriber + publisher
        assert delta(n.name, "chatmesh_redis_dropped_total") == 0
        assert after[n.name].get("chatmesh_redis_buffered") == 0
    # And the cluster works as before: a new say crosses nodes.
    bob.say("back")
    alice.wait_for(lambda evs: (M, say_msg("bob", "back")) in evs, what="a say after recovery")


def test_outage_longer_than_the_buffer_drops_and_counts(redis_factory, cluster_factory):
    """`buffer_messages` bounds the says kept during an outage (the oldest go first) and
    `buffer_ms` their age; what goes is counted in chatmesh_redis_dropped_total."""
    redis = redis_factory()
    cluster = cluster_factory("redis", names=("a1",), redis=redis,
                              redis_extra={"buffer_messages": 50, "buffer_ms": 1500})
    node = cluster["a1"]
    room = unique_room("bound")
    alice = cluster.client("a1", room)
    alice.join("alice")
    redis.stop(signal.SIGTERM)
    wait_until(lambda: node.health()[0] == 503, what="not ready")
    for i in range(100):
        alice.say(f"alice:{i}")
    wait_until(lambda: node.metric("chatmesh_redis_dropped_total") == 50, timeout=3,
               what="50 of 100 dropped by count")
    wait_until(lambda: node.metric("chatmesh_redis_buffered") == 50, timeout=3,
               what="buffered gauge at the bound")
    t_full = time.monotonic()
    wait_until(lambda: node.metric("chatmesh_redis_dropped_total") == 100, timeout=4,
               what="the other 50 aged out")
    aged = time.monotonic() - t_full
    assert node.metric("chatmesh_redis_buffered") == 0
    redis.start()
    node.wait_healthy(timeout=8)
    alice.say("alice:100")
    alice.wait_for(lambda evs: (M, say_msg("alice", "alice:100")) in evs, what="a new say")
    time.sleep(0.3)
    got = numbered(alice, "alice")
    print(f"\nbuffer_messages 50, buffer_ms 1500: 100 says during the outage -> 50 dropped at "
          f"once (count), 50 aged out {aged:.2f}s after the gauge showed 50; after the restart "
          f"the client got {got}")
    assert got == [100]
    assert node.metric("chatmesh_redis_dropped_total") == 100
