"""`chatmesh check-config FILE --connect` against real redis-servers: each seed of `[redis] url`
is dialed as a node would (AUTH included) and judged in one line; a seed a node cannot use
makes the exit status 1. Without `--connect` nothing is dialed.

A plain redis-server behind a `redis+cluster://` url is the mistake issue 17 names ("not in
cluster mode"); the same server behind `redis://` is fine. A one-node Redis Cluster (every slot
assigned to it) shows the other side: fine behind `redis+cluster://`, a warning behind
`redis://`.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from chatmesh_testkit import chatmesh_binary, free_ports, wait_until
from harness.cluster import factory
from redis_cluster_testkit import ClusterRedis
from redis_testkit import (REDIS_PASSWORD, RedisTLSFiles, redis_factory,  # noqa: F401  (fixtures)
                           redis_server)

CONF = """[cluster]
fanout = redis
[redis]
url = {url}
[node a1]
listen = 127.0.0.1:{port}
"""


def check_config(tmp_path: Path, url: str, *extra: str, redis_keys: dict | None = None) -> subprocess.CompletedProcess:
    conf = tmp_path / "cluster.conf"
    keys = "".join(f"{k} = {v}\n" for k, v in (redis_keys or {}).items())
    conf.write_text(CONF.format(url=url, port=free_ports(1)[0]).replace("[node a1]", keys + "[node a1]"))
    return subprocess.run([str(chatmesh_binary()), "check-config", str(conf), *extra],
                          capture_output=True, text=True, timeout=30)


def seed_lines(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in result.stdout.splitlines() if line.startswith("redis seed ")]


@pytest.fixture
def cluster_node(request) -> ClusterRedis:
    """One `redis-server --cluster-enabled yes` serving every slot: a one-shard cluster."""
    node = factory(request, ClusterRedis)(*free_ports(2))
    assert node.command("CLUSTER", "ADDSLOTSRANGE", "0", "16383") == "OK"
    wait_until(lambda: node.cluster_info().get("cluster_state") == "ok", 10,
               "cluster_state:ok on the one-node cluster")
    return node


def test_a_cluster_url_naming_a_plain_server_says_not_in_cluster_mode_and_fails(tmp_path, redis_server):
    seed = f"127.0.0.1:{redis_server.port}"
    r = check_config(tmp_path, f"redis+cluster://:{REDIS_PASSWORD}@{seed}", "--connect")
    assert r.returncode == 1, r.stdout + r.stderr
    assert seed_lines(r) == [
        f"redis seed {seed}: unusable: not in cluster mode (ERR This instance has cluster support "
        "disabled): use redis:// for a single server"], r.stdout
    assert "1 of 1 Redis seed unusable" in r.stderr, r.stderr


def test_a_single_server_url_naming_the_same_server_is_ok(tmp_path, redis_server):
    r = check_config(tmp_path, redis_server.url, "--connect")
    assert r.returncode == 0, r.stdout + r.stderr
    assert seed_lines(r) == [
        f"redis seed 127.0.0.1:{redis_server.port}: ok: a single server (not in cluster mode)"], r.stdout


def test_without_connect_nothing_is_dialed(tmp_path, redis_server):
    before = int(redis_server.command("INFO", "stats").decode().split("total_connections_received:")[1].split()[0])
    r = check_config(tmp_path, f"redis+cluster://:{REDIS_PASSWORD}@127.0.0.1:{redis_server.port}")
    after = int(redis_server.command("INFO", "stats").decode().split("total_connections_received:")[1].split()[0])
    assert r.returncode == 0, r.stdout + r.stderr
    assert seed_lines(r) == []
    assert after == before + 1, "only the test's own INFO connection"


def test_a_wrong_password_is_named_and_fails(tmp_path, redis_server):
    r = check_config(tmp_path, f"redis://:not-the-password@127.0.0.1:{redis_server.port}", "--connect")
    assert r.returncode == 1, r.stdout + r.stderr
    [line] = seed_lines(r)
    assert ": unusable: AUTH refused (WRONGPASS" in line, line


def test_every_seed_gets_a_line_a_dead_one_fails_the_check(tmp_path, redis_server):
    dead = f"127.0.0.1:{free_ports(1)[0]}"
    r = check_config(tmp_path, f"redis://:{REDIS_PASSWORD}@{dead}", "--connect")
    assert r.returncode == 1, r.stdout + r.stderr
    [line] = seed_lines(r)
    assert line.startswith(f"redis seed {dead}: unusable: unreachable: "), line


def test_a_one_shard_cluster_is_ok_behind_a_cluster_url_and_a_warning_behind_redis_url(tmp_path, cluster_node):
    seed = cluster_node.address
    r = check_config(tmp_path, f"redis+cluster://:{REDIS_PASSWORD}@{seed}", "--connect")
    assert r.returncode == 0, r.stdout + r.stderr
    assert seed_lines(r) == [f"redis seed {seed}: ok: in cluster mode, 1 shard covering every slot"], r.stdout

    r = check_config(tmp_path, f"redis://:{REDIS_PASSWORD}@{seed}", "--connect")
    assert r.returncode == 0, r.stdout + r.stderr
    [line] = seed_lines(r)
    assert line.startswith(f"redis seed {seed}: warning: a Redis Cluster node of 1 shard behind a "
                           "single-server url: use redis+cluster:// (with mode = classic or sharded)"), line


def test_tls_is_dialed_with_the_configs_ca_as_a_node_would(tmp_path, redis_factory):
    files = RedisTLSFiles(tmp_path / "tls")
    redis = redis_factory(tls=files)
    line = f"redis seed 127.0.0.1:{redis.port}: "
    r = check_config(tmp_path, redis.url, "--connect", redis_keys=files.redis_keys())
    assert r.returncode == 0, r.stdout + r.stderr
    assert seed_lines(r) == [line + "ok: a single server (not in cluster mode)"], r.stdout

    # Without tls_ca the system's CAs do not know the test CA: refused, as a node would be.
    r = check_config(tmp_path, redis.url, "--connect")
    assert r.returncode == 1, r.stdout + r.stderr
    assert seed_lines(r) == [line + "unusable: TLS handshake failed: certificate verify failed (is [redis] "
                             "tls_ca the CA that signed the server's certificate, and is that certificate "
                             "within its validity dates?)"], r.stdout
