"""Redis over TLS (`rediss://`) against a real redis-server serving only --tls-port, with
certificates made by the test (RedisTLSFiles: openssl CLI).

- The cross-node chat suite of test_fanout_modes runs again in a `redis-tls` mode: its tests are
  imported here and get this module's `mode` fixture (2 nodes, `rediss://`, `[redis] tls_ca`).
- Refusals, each with one clear line in the node's log however often the node redials, counted
  in chatmesh_redis_tls_failures_total{reason}, /healthz 503 `redis: down` with the reason, the
  node alive and still retrying, and nothing delivered: a server certificate from another CA, a
  url host the certificate does not name, no client certificate for a server that requires one,
  and `rediss://` to a plaintext Redis port. A client certificate given in [redis] works.
"""

from __future__ import annotations

import time

import pytest

from redis_testkit import (M, RedisServer, RedisTLSFiles, cluster_factory, join_msg,  # noqa: F401
                           module_resources, redis_factory, say_msg, unique_room, wait_until)
# In the order they run (their import order); the budget check last.
from test_fanout_modes import (test_configs_differ_only_in_the_fanout_line,  # noqa: F401
                               test_cross_node_join_say_quit, test_rooms_are_isolated,
                               test_three_senders_thousand_says_each_complete_and_in_order)
from test_fanout_modes import test_mode_within_budget  # noqa: F401

TLS_FAILURES = "chatmesh_redis_tls_failures_total"


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    return RedisTLSFiles(tmp_path_factory.mktemp("redis-tls-good"))


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory):
    """Certificates from an unrelated CA (same names)."""
    return RedisTLSFiles(tmp_path_factory.mktemp("redis-tls-other"), name="another CA")


class TLSMode:
    """What test_fanout_modes' tests read of their `mode`: the fanout (`name`), the test id
    (`label`), the cluster, its redis-server and when the mode started."""

    def __init__(self, cluster, redis, t0):
        self.name, self.label = "redis", "redis-tls"
        self.cluster, self.redis, self.t0 = cluster, redis, t0


@pytest.fixture(scope="module")
def mode(request, tls_files):
    t0 = time.monotonic()
    make_redis, make_cluster = module_resources(request)
    redis = make_redis(tls=tls_files)
    assert redis.url.startswith("rediss://")
    cluster = make_cluster("redis", redis_url=redis.url, redis_extra=tls_files.redis_keys())
    print(f"\n[redis-tls] 2 nodes up in {time.monotonic() - t0:.2f}s "
          f"(redis-server --tls-port {redis.port}, no plaintext port)")
    return TLSMode(cluster, redis, t0)


# --------------------------------------------------------------------------------------------
# Refusals


def wait_refused(node, reason: str, timeout: float = 10.0) -> dict:
    """Waits until the node has counted `reason` on at least 4 connections (both connections,
    each redialled at least once), then returns its /healthz (which must say redis down)."""
    wait_until(lambda: node.counter(TLS_FAILURES, reason=reason) >= 4, timeout=timeout,
               what=f"4 TLS failures ({reason}) counted\n{node.log_text(3000)}")
    status, health = node.health()
    assert status == 503, (status, health)
    assert health["redis"] == "down" and health["redis_tls_error"] == reason, health
    return health


def assert_said_once(node, phrase: str) -> str:
    """The log has exactly one `redis TLS handshake failed` line, and it contains `phrase`;
    returns its message."""
    lines = [ln for ln in node.log_text(200000).splitlines() if "redis TLS handshake failed" in ln]
    assert len(lines) == 1, "\n".join(lines) or node.log_text(3000)
    assert phrase in lines[0], lines[0]
    return lines[0].split("[RedisFanout] ", 1)[-1]


def assert_nothing_delivered(cluster, node_name: str, redis: RedisServer, room: str):
    """A member on the refused node gets nothing: not its own join (Redis mode delivers from the
    echo), not a say published into Redis by another client; its room is not subscribed."""
    alice = cluster.client(node_name, room)
    alice.join("alice", wait=False)
    alice.say("to nobody")
    redis.publish(room, '{"event":"message","data":{"username":"x","text":"via redis"}}')
    time.sleep(1.5)  # the node keeps redialling meanwhile
    assert alice.snapshot() == [], alice.snapshot()
    assert redis.numsub(room) == 0


def test_a_server_certificate_from_another_ca_is_refused(tls_files, other_ca, redis_factory,
                                                         cluster_factory):
    redis = redis_factory(tls=tls_files)
    cluster = cluster_factory("redis", names=("a1",), redis_url=redis.url,
                              redis_extra=other_ca.redis_keys(), start=False)
    node = cluster["a1"]
    node.spawn()
    node.wait_listening()
    health = wait_refused(node, "certificate_verify_failed")
    line = assert_said_once(node, "certificate verify failed (is [redis] tls_ca the CA that "
                                  "signed the server's certificate")
    assert_nothing_delivered(cluster, "a1", redis, unique_room("wrongca"))
    failures = node.counter(TLS_FAILURES, reason="certificate_verify_failed")
    assert node.alive() and node.counter("chatmesh_redis_up") == 0
    print(f"wrong CA: refused {failures:.0f} times, logged once: {line}; "
          f"/healthz 503 {health}")


def test_a_url_host_the_certificate_does_not_name_is_refused(tmp_path, redis_factory,
                                                             cluster_factory):
    # Signed by the CA the node trusts, but for another name only (NIOSSL would also accept
    # an IP SAN of the address it connected to, so there is none).
    elsewhere = RedisTLSFiles(tmp_path, server_sans=("DNS:redis.example",))
    redis = redis_factory(tls=elsewhere)
    url = redis.url.replace("@127.0.0.1:", "@localhost:")
    cluster = cluster_factory("redis", names=("a1",), redis_url=url,
                              redis_extra=elsewhere.redis_keys(), start=False)
    node = cluster["a1"]
    node.spawn()
    node.wait_listening()
    wait_refused(node, "hostname_mismatch")
    line = assert_said_once(node, "does not name localhost")
    assert "DNS:localhost" in line
    assert node.alive()
    print(f"host mismatch: {line}")


def test_a_client_certificate_in_the_config_is_presented(tls_files, redis_factory,
                                                         cluster_factory):
    redis = redis_factory(tls=tls_files, tls_auth_clients=True)
    cluster = cluster_factory("redis", redis_url=redis.url,
                              redis_extra=tls_files.redis_keys(client_certificate=True))
    room = unique_room("clientcert")
    alice, bob = cluster.client("a1", room), cluster.client("a2", room)
    alice.join("alice")
    bob.join("bob")
    alice.wait_for(lambda evs: (M, join_msg("bob")) in evs, what="bob's join")
    alice.say("over mutual TLS")
    bob.wait_for(lambda evs: (M, say_msg("alice", "over mutual TLS")) in evs, what="alice's say")
    for n in cluster.nodes.values():
        assert n.healthz()["redis"] == "up"
        assert n.counter(TLS_FAILURES) == 0
    print("tls-auth-clients yes: both nodes presented [redis] tls_cert and chatted across")


def test_no_client_certificate_for_a_server_that_requires_one_is_refused(tls_files, redis_factory,
                                                                         cluster_factory):
    redis = redis_factory(tls=tls_files, tls_auth_clients=True)
    cluster = cluster_factory("redis", names=("a1",), redis_url=redis.url,
                              redis_extra=tls_files.redis_keys(), start=False)
    node = cluster["a1"]
    node.spawn()
    node.wait_listening()
    wait_refused(node, "client_certificate_required")
    line = assert_said_once(node, "requires a client certificate: set [redis] tls_cert and tls_key")
    assert_nothing_delivered(cluster, "a1", redis, unique_room("nocert"))
    assert node.alive()
    print(f"no client certificate: {line}")


def test_rediss_to_a_plaintext_port_fails_clearly_and_the_node_stays_up(tls_files, redis_factory,
                                                                        cluster_factory):
    plain = redis_factory()
    url = plain.url.replace("redis://", "rediss://")
    cluster = cluster_factory("redis", names=("a1",), redis_url=url,
                              redis_extra=tls_files.redis_keys(), start=False)
    node = cluster["a1"]
    node.spawn()
    node.wait_listening()
    # A plaintext Redis answers a TLS hello with an error line (not TLS), or waits for the end
    # of a command that never comes (the handshake deadline).
    wait_until(lambda: node.counter(TLS_FAILURES) >= 4, timeout=20,
               what=f"4 TLS failures counted\n{node.log_text(3000)}")
    status, health = node.health()
    assert status == 503 and health["redis"] == "down", health
    reason = health["redis_tls_error"]
    assert reason in ("not_tls", "handshake_timeout"), health
    phrase = {"not_tls": "did not answer in TLS", "handshake_timeout": "no TLS handshake within"}
    line = assert_said_once(node, phrase[reason])
    assert "plaintext" in line
    assert_nothing_delivered(cluster, "a1", plain, unique_room("plainport"))
    assert node.alive()
    print(f"rediss:// to a plaintext port ({reason}): {line}")


def test_a_tls_redis_restart_is_reconnected_without_a_tls_complaint(tls_files, redis_factory,
                                                                    cluster_factory):
    """A restart is a lost connection, not a TLS failure: the nodes redial, handshake again,
    resubscribe, and chat goes on; no `redis TLS handshake failed` line, no TLS failure counted."""
    redis = redis_factory(tls=tls_files)
    cluster = cluster_factory("redis", redis_url=redis.url, redis_extra=tls_files.redis_keys())
    room = unique_room("tlsrestart")
    alice, bob = cluster.client("a1", room), cluster.client("a2", room)
    alice.join("alice")
    bob.join("bob")
    alice.wait_for(lambda evs: (M, join_msg("bob")) in evs, what="bob's join")
    redis.stop()
    for n in cluster.nodes.values():
        wait_until(lambda n=n: n.health()[1]["redis"] == "down", what=f"{n.name} sees Redis down")
    redis.start()
    t_up = time.monotonic()
    for n in cluster.nodes.values():
        n.wait_healthy(timeout=10)
    wait_until(lambda: redis.numsub(room) == 2, what="both nodes subscribed again")
    recovered = time.monotonic() - t_up
    alice.say("after the restart")
    bob.wait_for(lambda evs: (M, say_msg("alice", "after the restart")) in evs,
                 what="alice's say after the restart")
    for n in cluster.nodes.values():
        assert "redis TLS handshake failed" not in n.log_text(200000)
        assert n.counter(TLS_FAILURES) == 0
        assert n.counter("chatmesh_redis_reconnects_total") >= 2
    print(f"TLS redis restarted: both nodes ready and resubscribed {recovered:.2f}s later, "
          f"chat goes on")
