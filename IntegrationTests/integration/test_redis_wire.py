"""Redis fanout on the wire, seen from outside with redis-cli: channel = room id, payload = the
original fork_server.js JSON, byte for byte; messages that other publishers (an original
Node node, redis-cli) put on a room's channel reach the room's clients on every node; garbage
on a channel reaches nobody and harms nobody; `channel_prefix` prefixes every channel.

One redis-server (requirepass) and one 2-node cluster in redis mode serve the module; each
test uses its own rooms. The prefix test has its own cluster on the same Redis."""

from __future__ import annotations

import json
import time

import pytest

from chatmesh_testkit import RawWS, sio_event
from redis_testkit import (M, LineReader, join_msg, module_resources, quit_msg, say_msg,
                           says, stop_process, unique_room, wait_until)

SAY_JSON = '{"event":"broadcast_say","data":{"username":"ext","text":"hi"}}'


@pytest.fixture(scope="module")
def env(request):
    make_redis, make_cluster = module_resources(request)
    redis = make_redis()
    cluster = make_cluster("redis", redis=redis)
    print(f"\nredis-server :{redis.port} (requirepass), nodes {list(cluster.nodes.values())}")
    return redis, cluster


@pytest.fixture(scope="module")
def prefixed(request, env):
    redis, _ = env
    _, make_cluster = module_resources(request)
    return redis, make_cluster("redis", redis=redis, channel_prefix="chat:")


def subscribe_cli(redis, channel: str):
    """redis-cli SUBSCRIBE <channel> as a subprocess, once Redis confirmed the subscription."""
    proc = redis.cli_popen("SUBSCRIBE", channel)
    reader = LineReader(proc)
    assert reader.wait_lines(3) == [b"subscribe", channel.encode(), b"1"]
    return proc, reader


def published_lines(channel: str, *payloads: str) -> list[bytes]:
    out = []
    for p in payloads:
        out += [b"message", channel.encode(), p.encode()]
    return out


def joined_pair(cluster, redis, room, names=("alice", "bob"), channel=None, others=0):
    """A client on a1 and one on a2 in `room`, both joined; both nodes subscribed (besides
    `others` subscribers such as a redis-cli)."""
    a = cluster.client("a1", room)
    b = cluster.client("a2", room)
    a.join(names[0])
    b.join(names[1])
    a.wait_for(lambda evs: (M, join_msg(names[1])) in evs, what=f"{names[1]}'s join")
    wait_until(lambda: redis.numsub(channel or room) == 2 + others, what="both nodes subscribed")
    return a, b


def test_nodes_report_redis_up_in_healthz_and_metrics(env):
    redis, cluster = env
    for n in cluster.nodes.values():
        h = n.healthz()
        assert h["status"] == "ok" and h["redis"] == "up", h
        m = n.metrics()
        assert m.get("chatmesh_redis_up") == 1
        for name in ("chatmesh_redis_published_total", "chatmesh_redis_received_total",
                     "chatmesh_redis_buffered", "chatmesh_redis_dropped_total",
                     "chatmesh_redis_rejected_payloads_total", "chatmesh_redis_errors_total",
                     "chatmesh_redis_reconnects_total"):
            assert (name, frozenset()) in m.samples, f"{n.name}: no {name} in /metrics"
    print("both nodes: /healthz redis=up, chatmesh_redis_up 1, every chatmesh_redis_* series "
          "present")


def test_redis_cli_subscriber_sees_exactly_the_original_json(env):
    redis, cluster = env
    room = unique_room("wire")
    proc, reader = subscribe_cli(redis, room)
    try:
        carol = cluster.client("a1", room)
        dave = cluster.client("a2", room)
        carol.join("carol")
        dave.join("dave")
        carol.wait_for(lambda evs: (M, join_msg("dave")) in evs, what="dave's join")
        carol.say("hi")
        dave.wait_for(lambda evs: (M, say_msg("carol", "hi")) in evs, what="carol's say")
        dave.disconnect()
        carol.wait_for(lambda evs: (M, quit_msg("dave")) in evs, what="dave's quit")
        want = published_lines(
            room,
            '{"event":"join","data":{"username":"carol"}}',
            '{"event":"join","data":{"username":"dave"}}',
            '{"event":"broadcast_say","data":{"username":"carol","text":"hi"}}',
            '{"event":"broadcast_quit","data":{"username":"dave"}}')
        got = reader.wait_lines(3 + len(want))
        time.sleep(0.3)  # a second copy of any of them (published per node) would show now
        got = reader.snapshot()
        print("redis-cli SUBSCRIBE saw:\n  " + "\n  ".join(l.decode() for l in got[3:]))
        assert got[3:] == want
    finally:
        stop_process(proc)


def test_say_payload_escapes_like_json_stringify(env):
    """Quotes, backslashes, control characters and non-ASCII text as JSON.stringify writes
    them (non-ASCII literal, \\" \\\\ \\n \\u0001 escaped)."""
    redis, cluster = env
    room = unique_room("escape")
    proc, reader = subscribe_cli(redis, room)
    try:
        zoe = cluster.client("a1", room)
        zoe.join("zoë")
        text = 'say "hi" \\ tab\there\nnew line \u0001 é 日本 💬 </script>'
        zoe.say(text)
        zoe.wait_for(lambda evs: (M, say_msg("zoë", text)) in evs, what="own say")
        got = reader.wait_lines(9)
        want_json = json.dumps({"event": "broadcast_say", "data": {"username": "zoë", "text": text}},
                               separators=(",", ":"), ensure_ascii=False)
        assert got[3:6] == published_lines(room, '{"event":"join","data":{"username":"zoë"}}')
        assert got[6:9] == [b"message", room.encode(), want_json.encode()], got[6:]
    finally:
        stop_process(proc)


def test_redis_cli_publish_reaches_clients_on_both_nodes(env):
    redis, cluster = env
    room = unique_room("ext")
    alice, bob = joined_pair(cluster, redis, room)
    raw = RawWS(cluster["a2"], room)
    try:
        raw.connect_sio()
        raw.join("raw")
        alice.wait_for(lambda evs: (M, join_msg("raw")) in evs, what="raw's join")
        r = redis.cli("PUBLISH", room, SAY_JSON)
        assert r.returncode == 0 and r.stdout.strip() == b"2", r  # both nodes subscribed
        want = (M, json.loads(SAY_JSON))
        for c in (alice, bob):
            c.wait_for(lambda evs: want in evs, what="the external say")
        frame = raw.recv()
        assert frame == '42["message",' + SAY_JSON + "]", frame
        print(f"PUBLISH {room} {SAY_JSON} -> 2 subscribers; alice@a1 and bob@a2 got it as "
              f"'message'; raw WebSocket frame on a2: {frame}")

        # Another publisher's spacing and escapes are normalised as JSON.stringify would.
        loose = '{ "event" : "broadcast_say", "data" : { "username" : "ext", "text" : "h\\u00e9 \\ud83d\\udcac" } }'
        assert redis.cli("PUBLISH", room, loose).stdout.strip() == b"2"
        want2 = {"event": "broadcast_say", "data": {"username": "ext", "text": "hé 💬"}}
        for c in (alice, bob):
            c.wait_for(lambda evs: (M, want2) in evs, what="the loosely spelled say")
        frame2 = raw.recv()
        assert frame2 == sio_event("message", want2), frame2
        # The external messages came once each, in order, after the joins.
        assert says(bob) == [("ext", "hi"), ("ext", "hé 💬")]
        assert says(alice) == [("ext", "hi"), ("ext", "hé 💬")]
    finally:
        raw.close()


def test_garbage_on_a_channel_reaches_nobody(env):
    redis, cluster = env
    room = unique_room("garbage")
    alice, bob = joined_pair(cluster, redis, room)
    before = {n: cluster[n].metrics() for n in cluster.nodes}
    base = {c: len(c.snapshot()) for c in (alice, bob)}
    via_cli = ["not json", "[1,2]", '{"data":1}']
    via_resp = [b"", b"null", b'"text"', b"42", b'{"event":1,"data":{}}',
                b'{"event":"broadcast_say","data":{"username":"x"', b"\xff\xfe{}",
                b'{"event":"broadcast_say","data":' + b"[" * 5000 + b"]" * 5000 + b"}",
                b'{"event":"broadcast_say"}' + b" trailing"]
    for p in via_cli:
        r = redis.cli("PUBLISH", room, p)
        assert r.stdout.strip() == b"2", r
    for p in via_resp:
        assert redis.publish(room, p) == 2
    sentinel = {"event": "broadcast_say", "data": {"username": "ext", "text": "after garbage"}}
    assert redis.publish(room, json.dumps(sentinel)) == 2
    for c in (alice, bob):
        c.wait_for(lambda evs: (M, sentinel) in evs, what="the sentinel")
    time.sleep(0.2)
    for c in (alice, bob):
        assert c.snapshot()[base[c]:] == [(M, sentinel)], c.snapshot()[base[c]:]
        assert c.sio.connected and not c.disconnected.is_set()
    n_bad = len(via_cli) + len(via_resp)
    deltas = {}
    for n in cluster.nodes:
        after = cluster[n].metrics()
        d = {k: (after.get(k) or 0) - (before[n].get(k) or 0)
             for k in ("chatmesh_redis_rejected_payloads_total", "chatmesh_redis_received_total",
                       "chatmesh_redis_errors_total")}
        deltas[n] = d
        assert d["chatmesh_redis_rejected_payloads_total"] == n_bad, (n, d)
        assert d["chatmesh_redis_received_total"] == n_bad + 1, (n, d)
        assert d["chatmesh_redis_errors_total"] == 0, (n, d)
        assert cluster[n].alive()
        assert cluster[n].healthz()["redis"] == "up"
    print(f"{n_bad} garbage payloads ({via_cli} + {len(via_resp)} more) reached nobody; "
          f"clients stayed connected; metric deltas {deltas}")
    alice.say("still works")
    bob.wait_for(lambda evs: (M, say_msg("alice", "still works")) in evs, what="a later say")


def test_subscription_follows_local_membership(env):
    """SUBSCRIBE when a room gets its first local member (join), UNSUBSCRIBE when the last
    one leaves; another room's members do not matter."""
    redis, cluster = env
    room = unique_room("member")
    assert redis.numsub(room) == 0
    alice = cluster.client("a1", room)
    time.sleep(0.2)
    assert redis.numsub(room) == 0, "connected but not joined is not a member"
    alice.join("alice")
    wait_until(lambda: redis.numsub(room) == 1, what="a1 subscribed")
    alice2 = cluster.client("a1", room)
    alice2.join("alice2")
    bob = cluster.client("a2", room)
    bob.join("bob")
    wait_until(lambda: redis.numsub(room) == 2, what="a2 subscribed too")
    time.sleep(0.2)
    assert redis.numsub(room) == 2, "one subscription per node, not per member"
    bob.disconnect()
    wait_until(lambda: redis.numsub(room) == 1, what="a2 unsubscribed after its last member")
    alice.disconnect()
    time.sleep(0.2)
    assert redis.numsub(room) == 1, "a1 still has alice2"
    alice2.disconnect()
    wait_until(lambda: redis.numsub(room) == 0, what="a1 unsubscribed")
    assert room not in redis.channels()
    print("PUBSUB NUMSUB followed the members: 0 -> 1 (join on a1) -> 2 (join on a2) -> 1 -> 0")


def test_each_say_is_published_once_by_its_origin_node(env):
    redis, cluster = env
    room = unique_room("count")
    alice, bob = joined_pair(cluster, redis, room)
    before = {n: cluster[n].metrics() for n in cluster.nodes}
    n = 50
    for i in range(n):
        alice.say(f"alice:{i}")
    for c in (alice, bob):
        wait_until(lambda c=c: len(says(c)) >= n, what=f"{n} says")
    time.sleep(0.2)

    def delta(node, name):
        return (cluster[node].metrics().get(name) or 0) - (before[node].get(name) or 0)

    pub = {x: delta(x, "chatmesh_redis_published_total") for x in cluster.nodes}
    recv = {x: delta(x, "chatmesh_redis_received_total") for x in cluster.nodes}
    print(f"{n} says from a1: published {pub}, received {recv}")
    assert pub == {"a1": n, "a2": 0}
    assert recv == {"a1": n, "a2": n}
    assert says(bob) == says(alice) == [("alice", f"alice:{i}") for i in range(n)]


def test_first_joiner_always_gets_its_own_join_back(env):
    """The first member of a room on a node gets its own join through the Redis echo, so the
    SUBSCRIBE must be in effect before that join's PUBLISH is."""
    redis, cluster = env
    rounds, missed = 60, []
    for i in range(rounds):
        room = unique_room("first")
        c = cluster.client("a1" if i % 2 else "a2", room)
        c.join(f"u{i}", wait=False)
        try:
            c.wait_for(lambda evs: (M, join_msg(f"u{i}")) in evs, timeout=2, what="own join")
        except AssertionError:
            missed.append(room)
        c.disconnect()
    print(f"{rounds} first joins of fresh rooms: {rounds - len(missed)} got their own join "
          f"back, {len(missed)} did not")
    assert not missed


def test_channel_prefix_prefixes_every_channel(prefixed):
    redis, cluster = prefixed
    room = unique_room("pfx")
    channel = "chat:" + room
    proc, reader = subscribe_cli(redis, channel)
    try:
        alice, bob = joined_pair(cluster, redis, room, channel=channel, others=1)
        assert channel in redis.channels()
        assert room not in redis.channels()
        alice.say("hi")
        bob.wait_for(lambda evs: (M, say_msg("alice", "hi")) in evs, what="alice's say")
        got = reader.wait_lines(12)
        assert got[3:] == published_lines(
            channel, '{"event":"join","data":{"username":"alice"}}',
            '{"event":"join","data":{"username":"bob"}}',
            '{"event":"broadcast_say","data":{"username":"alice","text":"hi"}}')
        # The bare room name is not our channel: nobody listens there.
        assert redis.cli("PUBLISH", room, SAY_JSON).stdout.strip() == b"0"
        r = redis.cli("PUBLISH", channel, SAY_JSON)
        assert r.stdout.strip() == b"3", r  # two nodes + our redis-cli
        for c in (alice, bob):
            c.wait_for(lambda evs: (M, json.loads(SAY_JSON)) in evs, what="the external say")
        assert says(bob) == [("alice", "hi"), ("ext", "hi")]
        print(f"channel_prefix = chat: -> PUBSUB CHANNELS has {channel!r}, not {room!r}; "
              f"redis-cli SUBSCRIBE {channel} saw the joins and the say; PUBLISH {channel} "
              f"reached both nodes")
    finally:
        stop_process(proc)
