"""Helpers for the Redis Cluster tests: a real 6-process Redis Cluster (3 primaries + 3
replicas) started by the test, what it is doing (slots, primaries, shard channels, SPUBLISH
counts), what the tests do to it (kill -9 a primary and wait for its replica's promotion,
`redis-cli --cluster reshard` under traffic, stop whole shards for CLUSTERDOWN) and 3 chatmesh
nodes on it in sharded or classic mode.

    from redis_cluster_testkit import cluster_module  # the module-scoped fixture helper

    @pytest.fixture(scope="module")
    def env(request):
        make_redis_cluster, make_chat, make_redis = cluster_module(request)
        rc = make_redis_cluster()
        return rc, make_chat(rc, mode="sharded")    # a1..a3, url redis+cluster://:PASS@seed1,seed2

Every redis-server listens on a free loopback port with its cluster bus on another free port
(`cluster-port`: port + 10000 may be above 65535), requires a password (requirepass and
masterauth), has no persistence (its nodes.conf aside) and lives in a temp dir of its own;
cluster-node-timeout is 1000 ms so a failover takes about 2 s. Everything is stopped by pid
(SIGTERM, SIGKILL after 5 s) when the module ends, also when a test failed (its logs printed
then). Slots are computed here too (CRC16-XMODEM, hash tags honoured) so that rooms can be
chosen per slot without asking Redis 16384 times; `RedisCluster.keyslot` asks Redis
(CLUSTER KEYSLOT) and the tests check the two agree.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from chatmesh_testkit import WAIT, free_ports, wait_until  # noqa: F401
from harness.cluster import FAST_LIMITS, Cluster, teardown
from harness.process import ChildProcess, cut, wait_ready
from redis_testkit import (REDIS_PASSWORD, RedisServer, RespClient, RespError,  # noqa: F401
                           redis_cli_binary, redis_server_binary)

NODE_TIMEOUT_MS = 1000
SLOTS = 16384


# --------------------------------------------------------------------------------------------
# Slots, as Redis computes them (CRC16-XMODEM of the key or of its {hash tag}, mod 16384)


def _crc16_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
        table.append(crc & 0xFFFF)
    return table


_CRC16 = _crc16_table()


def crc16(data: bytes) -> int:
    crc = 0
    for b in data:
        crc = ((crc << 8) & 0xFFFF) ^ _CRC16[((crc >> 8) ^ b) & 0xFF]
    return crc


def key_slot(key: str | bytes) -> int:
    data = key.encode() if isinstance(key, str) else key
    start = data.find(b"{")
    if start >= 0:
        end = data.find(b"}", start + 1)
        if end > start + 1:
            data = data[start + 1:end]
    return crc16(data) % SLOTS


def room_in_slots(prefix: str, slots) -> str:
    """A fresh room id (prefix-<random>) whose slot is in `slots` (a set or range)."""
    wanted = set(slots)
    while True:
        room = f"{prefix}-{uuid.uuid4().hex[:10]}"
        if key_slot(room) in wanted:
            return room


# --------------------------------------------------------------------------------------------
# One cluster-enabled redis-server


class ClusterRedis(ChildProcess):
    """One `redis-server --cluster-enabled yes` on a free loopback port (bus on `bus_port`),
    requirepass + masterauth, no persistence; its nodes.conf in its own temp dir, so a stop and
    a start again rejoin the cluster with the same node id."""

    what = "redis-server (cluster)"

    def __init__(self, port: int, bus_port: int, password: str = REDIS_PASSWORD,
                 node_timeout_ms: int = NODE_TIMEOUT_MS):
        super().__init__(Path(tempfile.mkdtemp(prefix="chatmesh-redis-cluster-")), "redis")
        self.port, self.bus_port = port, bus_port
        self.password = password
        self.node_timeout_ms = node_timeout_ms
        self._id: str | None = None

    def argv(self) -> list[str]:
        return [redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1",
                "--cluster-enabled", "yes", "--cluster-port", str(self.bus_port),
                "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", str(self.node_timeout_ms),
                "--requirepass", self.password, "--masterauth", self.password,
                "--save", "", "--appendonly", "no", "--daemonize", "no",
                # a replica syncs at once, not after the default 5 s wait for more replicas
                "--repl-diskless-sync-delay", "0",
                "--dir", str(self.workdir), "--logfile", "", "--protected-mode", "yes"]

    def wait_started(self, timeout: float) -> None:
        def pong():
            try:
                return self.command("PING") == "PONG"
            except RespError as e:
                return str(e)

        wait_ready(self.proc, pong, f"redis-server :{self.port}", self.log_text, timeout)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def describe(self) -> str:
        return f"(port {self.port}, bus {self.bus_port})"

    def __repr__(self):
        return f"ClusterRedis(:{self.port})"

    def log_text(self, limit: int = 6000, all_generations: bool = True) -> str:
        return super().log_text(limit, all_generations)

    # -- talking to it -----------------------------------------------------------------------
    def client(self, timeout: float = WAIT) -> RespClient:
        return RespClient(self.port, self.password, timeout=timeout)

    def command(self, *args, timeout: float = WAIT):
        with self.client(timeout) as c:
            return c.command(*args)

    def info(self, section: str = "") -> dict[str, str]:
        text = self.command("INFO", *([section] if section else [])).decode()
        out = {}
        for line in text.splitlines():
            if ":" in line and not line.startswith("#"):
                k, v = line.split(":", 1)
                out[k] = v
        return out

    def cluster_info(self) -> dict[str, str]:
        text = self.command("CLUSTER", "INFO").decode()
        return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)

    @property
    def node_id(self) -> str:
        if self._id is None:
            self._id = self.command("CLUSTER", "MYID").decode()
        return self._id

    def role(self) -> str:
        return self.info("replication").get("role", "?")

    def shard_channels(self, pattern: str = "*") -> set[str]:
        """PUBSUB SHARDCHANNELS: the shard channels someone is subscribed to on this node."""
        return {c.decode() for c in self.command("PUBSUB", "SHARDCHANNELS", pattern)}

    def shard_numsub(self, channel: str) -> int:
        return int(self.command("PUBSUB", "SHARDNUMSUB", channel)[1])

    def channels(self, pattern: str = "*") -> set[str]:
        """PUBSUB CHANNELS: classic channels someone is subscribed to on this node."""
        return {c.decode() for c in self.command("PUBSUB", "CHANNELS", pattern)}

    def command_calls(self, command: str) -> int:
        """INFO commandstats: how many times `command` (e.g. "spublish") ran on this node."""
        stat = self.info("commandstats").get(f"cmdstat_{command.lower()}", "")
        for part in stat.split(","):
            if part.startswith("calls="):
                return int(part[len("calls="):])
        return 0

    def cli(self, *args, timeout: float = 60) -> subprocess.CompletedProcess:
        """redis-cli -h 127.0.0.1 -p PORT -a PASS ARGS (the password out of the warnings)."""
        return subprocess.run([redis_cli_binary(), "-h", "127.0.0.1", "-p", str(self.port),
                               "-a", self.password, "--no-auth-warning", *map(str, args)],
                              capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)


# --------------------------------------------------------------------------------------------
# The cluster


class Shard:
    """One row of CLUSTER SLOTS merged per primary: its slot ranges, primary and replicas."""

    def __init__(self, primary: ClusterRedis, replicas: list[ClusterRedis],
                 ranges: list[tuple[int, int]]):
        self.primary, self.replicas, self.ranges = primary, replicas, sorted(ranges)

    def slots(self) -> list[int]:
        return [s for a, b in self.ranges for s in range(a, b + 1)]

    def owns(self, slot: int) -> bool:
        return any(a <= slot <= b for a, b in self.ranges)

    @property
    def label(self) -> str:
        return ",".join(f"{a}-{b}" for a, b in self.ranges) + f"@{self.primary.port}"

    def __repr__(self):
        return f"Shard({self.label}, replicas {[r.port for r in self.replicas]})"


class RedisCluster:
    """`primaries` primaries with `replicas` replicas each (6 processes by default), created
    with `redis-cli --cluster create ... --cluster-replicas N --cluster-yes -a PASS`. `start()`
    returns once every node says cluster_state:ok, knows every node, and every replica's link
    to its primary is up."""

    def __init__(self, primaries: int = 3, replicas: int = 1, password: str = REDIS_PASSWORD,
                 node_timeout_ms: int = NODE_TIMEOUT_MS):
        self.password = password
        self.replicas_per_primary = replicas
        self.expected_replicas = primaries * replicas
        count = primaries * (1 + replicas)
        ports = free_ports(2 * count)
        self.nodes = [ClusterRedis(ports[2 * i], ports[2 * i + 1], password, node_timeout_ms)
                      for i in range(count)]
        self.created_s: float | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self, timeout: float = 30.0) -> "RedisCluster":
        t0 = time.monotonic()
        for n in self.nodes:
            n.spawn()
        for n in self.nodes:
            n.wait_started(10.0)
        r = subprocess.run([redis_cli_binary(), "-a", self.password, "--no-auth-warning",
                            "--cluster", "create", *(n.address for n in self.nodes),
                            "--cluster-replicas", str(self.replicas_per_primary),
                            "--cluster-yes"],
                           capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        assert r.returncode == 0 and "[OK] All 16384 slots covered" in r.stdout, \
            f"redis-cli --cluster create failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
        self.wait_ok(timeout)
        self.created_s = time.monotonic() - t0
        return self

    def alive(self) -> list[ClusterRedis]:
        return [n for n in self.nodes if n.alive()]

    def health(self) -> str | None:
        """None when every running node says cluster_state:ok, knows as many nodes as run,
        agrees on the slots, and every running replica's link is up; else what is not."""
        alive = self.alive()
        views = set()
        for n in alive:
            try:
                ci = n.cluster_info()
                if ci.get("cluster_state") != "ok":
                    return f":{n.port} cluster_state {ci.get('cluster_state')}"
                if int(ci.get("cluster_known_nodes", 0)) < len(alive):
                    return f":{n.port} knows {ci.get('cluster_known_nodes')} nodes"
                if int(ci.get("cluster_slots_assigned", 0)) != SLOTS:
                    return f":{n.port} has {ci.get('cluster_slots_assigned')} slots assigned"
                repl = n.info("replication")
                if repl.get("role") == "slave" and repl.get("master_link_status") != "up":
                    return f"replica :{n.port} link to its primary {repl.get('master_link_status')}"
                known = self.cluster_nodes(via=n)
                failed = [k["port"] for k in known if k["flags"] & {"fail", "fail?"}]
                if failed:
                    return f":{n.port} sees {failed} failing"
                # redis-cli --cluster create returns before every node learned who replicates
                # whom: until then a replica-to-be is a primary without slots.
                replicas = sum(1 for k in known if "slave" in k["flags"])
                if replicas != self.expected_replicas:
                    return f":{n.port} sees {replicas} replicas of {self.expected_replicas}"
                views.add(tuple((s.ranges[0], s.primary.port) for s in self.shards(via=n)))
            except (OSError, RespError, AssertionError) as e:
                return f":{n.port} {e!r}"
        if len(views) != 1:
            return f"the nodes disagree on the slots: {views}"
        return None

    def wait_ok(self, timeout: float = 30.0) -> float:
        """Waits until health() is None; returns the seconds it took."""
        t0 = time.monotonic()
        last = None
        while (last := self.health()) is not None:
            if time.monotonic() - t0 > timeout:
                raise AssertionError(f"Redis Cluster not ok after {timeout}s: {last}\n" +
                                     self.dump_logs())
            time.sleep(0.05)
        return time.monotonic() - t0

    def shutdown(self) -> list[str]:
        """Teardown: every process stopped by pid (all signalled first)."""
        for n in self.nodes:
            n.terminate()
        for n in self.nodes:
            n.stop()
        return []

    def dump_logs(self, limit: int = 4000) -> str:
        return "=== Redis Cluster ===\n" + "".join(n.dump_logs(limit) for n in self.nodes)

    def remove_dir(self) -> None:
        for n in self.nodes:
            shutil.rmtree(n.workdir, ignore_errors=True)

    # -- what it looks like ------------------------------------------------------------------
    def by_port(self, port: int) -> ClusterRedis:
        return next(n for n in self.nodes if n.port == port)

    def any_alive(self, but=()) -> ClusterRedis:
        return next(n for n in self.alive() if n not in but)

    def cluster_nodes(self, via: ClusterRedis | None = None) -> list[dict]:
        """CLUSTER NODES (asked of `via`, or of a running node): per node its id, port, flags,
        primary id ("-" for a primary) and slot ranges (migrating/importing marks left out).
        (CLUSTER SLOTS would not do: Redis 7.0 leaves out replicas whose replication offset
        is still 0, i.e. every replica of a cluster nobody wrote to.)"""
        node = via or self.any_alive()
        out = []
        for line in node.command("CLUSTER", "NODES").decode().splitlines():
            f = line.split()
            ranges = []
            for s in f[8:]:
                if s.startswith("["):
                    continue
                a, _, b = s.partition("-")
                ranges.append((int(a), int(b or a)))
            out.append({"id": f[0], "port": int(f[1].split("@")[0].rsplit(":", 1)[1]),
                        "flags": set(f[2].split(",")), "primary": f[3], "ranges": ranges})
        return out

    def shards(self, via: ClusterRedis | None = None) -> list["Shard"]:
        """The shards as `via` (or a running node) sees them (CLUSTER NODES): every primary
        owning slots, with its replicas (failed ones too), ordered by first slot."""
        nodes = self.cluster_nodes(via)
        shards = []
        for p in nodes:
            if "master" in p["flags"] and p["ranges"]:
                reps = [self.by_port(r["port"]) for r in nodes if r["primary"] == p["id"]]
                shards.append(Shard(self.by_port(p["port"]), reps, p["ranges"]))
        return sorted(shards, key=lambda s: s.ranges[0])

    def shard_of(self, room: str) -> Shard:
        slot = key_slot(room)
        return next(s for s in self.shards() if s.owns(slot))

    def primary_for_slot(self, slot: int) -> ClusterRedis:
        return next(s.primary for s in self.shards() if s.owns(slot))

    def keyslot(self, key: str) -> int:
        """CLUSTER KEYSLOT, asked of Redis (the tests compare it with key_slot)."""
        return int(self.any_alive().command("CLUSTER", "KEYSLOT", key))

    def url(self, seeds: int = 2, scheme: str = "redis+cluster") -> str:
        """The one [redis] url line: redis+cluster://:PASS@seed1,seed2 (the first `seeds`
        nodes; not all of them, so the rest of the topology must come from the cluster)."""
        addrs = ",".join(n.address for n in self.nodes[:seeds])
        return f"{scheme}://:{self.password}@{addrs}"

    def rooms_per_shard(self, prefix: str, per_shard: int = 2) -> dict[int, list[str]]:
        """{primary port: [rooms whose slot that primary owns]}, per_shard rooms each."""
        out: dict[int, list[str]] = {}
        for s in self.shards():
            out[s.primary.port] = [room_in_slots(f"{prefix}{i}", s.slots())
                                   for i in range(per_shard)]
        return out

    def spublish_calls(self) -> dict[int, int]:
        """{port: SPUBLISH calls} of every running node."""
        return {n.port: n.command_calls("spublish") for n in self.alive()}

    # -- what the tests do to it -------------------------------------------------------------
    def kill_primary(self, primary: ClusterRedis, timeout: float = 15.0) -> dict:
        """kill -9 `primary` and wait until a replica of it owns its slots in the view of
        every other running node. Returns {"killed_at", "promoted_at" (monotonic), "new"
        (the promoted replica), "seconds"}."""
        shard = next(s for s in self.shards() if s.primary is primary)
        first = shard.ranges[0][0]
        primary.kill9()
        killed_at = time.monotonic()

        def promoted():
            owners = set()
            for n in self.alive():
                try:
                    owners.add(next(s.primary.port for s in self.shards(via=n) if s.owns(first)))
                except (OSError, RespError, StopIteration):
                    return None
            if len(owners) == 1 and (port := owners.pop()) in {r.port for r in shard.replicas}:
                return self.by_port(port)
            return None

        new = wait_until(promoted, timeout=timeout, interval=0.02,
                         what=f"a replica of :{primary.port} promoted")
        promoted_at = time.monotonic()
        return {"killed_at": killed_at, "promoted_at": promoted_at, "new": new,
                "seconds": promoted_at - killed_at}

    def restart(self, node: ClusterRedis, timeout: float = 20.0) -> float:
        """Starts a stopped or killed node again (same port, same nodes.conf: it rejoins, as
        a replica if its slots went to another node meanwhile) and waits until the whole
        cluster is ok again; returns the seconds that took."""
        t0 = time.monotonic()
        node.start(10.0)
        self.wait_ok(timeout)
        return time.monotonic() - t0

    def reshard_slots(self, source: ClusterRedis, count: int) -> list[int]:
        """The `count` slots `redis-cli --cluster reshard --cluster-from <source>` moves: the
        lowest slots `source` owns (redis-cli takes a source's slots in ascending order)."""
        shard = next(s for s in self.shards() if s.primary is source)
        return shard.slots()[:count]

    def reshard(self, source: ClusterRedis, target: ClusterRedis, count: int) -> float:
        """`redis-cli --cluster reshard` of `count` slots from `source` to `target`; returns
        the seconds it ran."""
        t0 = time.monotonic()
        r = subprocess.run([redis_cli_binary(), "-a", self.password, "--no-auth-warning",
                            "--cluster", "reshard", source.address,
                            "--cluster-from", source.node_id, "--cluster-to", target.node_id,
                            "--cluster-slots", str(count), "--cluster-yes"],
                           capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
        assert r.returncode == 0, f"reshard failed ({r.returncode}):\n{cut(r.stdout, 3000)}\n" \
                                  f"{r.stderr}"
        return time.monotonic() - t0


# --------------------------------------------------------------------------------------------
# chatmesh nodes on the cluster


class ClusterChat(Cluster):
    """3 chatmesh nodes (a1..a3) in redis mode whose [redis] url is the cluster's
    (redis+cluster://:PASS@seed1,seed2) and `mode = sharded|classic`."""

    def __init__(self, redis_cluster: RedisCluster, mode: str = "sharded", names=("a1", "a2", "a3"),
                 redis_extra: dict | None = None, limits=None, url: str | None = None, **kw):
        self.redis_cluster = redis_cluster
        self.mode = mode
        extra = {"mode": mode, **(redis_extra or {})} if mode else dict(redis_extra or {})
        super().__init__("redis", nodes=list(names), secret="redis-cluster-test-secret",
                         redis_url=url or redis_cluster.url(), redis_extra=extra,
                         limits=FAST_LIMITS if limits is None else limits,
                         prefix=f"chatmesh-rcluster-{mode or 'default'}-", **kw)


def cluster_module(request):
    """For module-scoped fixtures: (make_redis_cluster(**kw), make_chat(redis_cluster, **kw),
    make_redis(**kw)), each returning a started RedisCluster / ClusterChat / plain RedisServer,
    all stopped by pid when the module ends (chatmesh nodes before the redis-servers)."""
    td = teardown(request)
    return (lambda **kw: td.add(RedisCluster(**kw)).start(),
            lambda rc, start=True, **kw: (lambda c: c.start() if start else c)(
                td.add(ClusterChat(rc, **kw))),
            lambda **kw: td.add(RedisServer(**kw)).start())


def sigterm_all(nodes: list[ClusterRedis]) -> None:
    """Stops `nodes` on purpose (SIGTERM to all first: redis writes nodes.conf), by pid."""
    for n in nodes:
        n.terminate()
    for n in nodes:
        n.stop()


__all__ = ["ClusterChat", "ClusterRedis", "RedisCluster", "Shard", "cluster_module", "crc16",
           "key_slot", "room_in_slots", "sigterm_all", "NODE_TIMEOUT_MS", "SLOTS"]
