import Metrics

final class RedisMetrics: Sendable {
    let up = Metrics.Gauge(label: "chatmesh_redis_up")
    let published = Metrics.Counter(label: "chatmesh_redis_published_total")
    let received = Metrics.Counter(label: "chatmesh_redis_received_total")
    let buffered = Metrics.Gauge(label: "chatmesh_redis_buffered")
    let dropped = Metrics.Counter(label: "chatmesh_redis_dropped_total")
    let rejectedPayloads = Metrics.Counter(label: "chatmesh_redis_rejected_payloads_total")
    let errors = Metrics.Counter(label: "chatmesh_redis_errors_total")
    let reconnects = Metrics.Counter(label: "chatmesh_redis_reconnects_total")

    /// A `rediss://` connection failed its TLS (reasons: `RedisTLSFailure`).
    func tlsFailure(reason: String) {
        Metrics.Counter(label: "chatmesh_redis_tls_failures_total", dimensions: [("reason", reason)]).increment()
    }

    // MARK: Redis Cluster (sharded mode); `shard` is the primary's address, host:port.

    let asks = Metrics.Counter(label: "chatmesh_redis_ask_total")
    /// A say followed more MOVED replies than a topology change explains: it went back to
    /// waiting and the topology is read again.
    let redirectLoops = Metrics.Counter(label: "chatmesh_redis_redirect_loops_total")
    let shards = Metrics.Gauge(label: "chatmesh_redis_shards")
    let shardsUp = Metrics.Gauge(label: "chatmesh_redis_shards_up")

    /// 1 while the shard's subscriber connection is up (its rooms are heard), else 0.
    func shardUp(_ shard: String, _ isUp: Bool) {
        Metrics.Gauge(label: "chatmesh_redis_shard_up", dimensions: [("shard", shard)]).record(isUp ? 1 : 0)
    }

    /// Rooms SSUBSCRIBEd on the shard.
    func shardRooms(_ shard: String, _ count: Int) {
        Metrics.Gauge(label: "chatmesh_redis_shard_rooms", dimensions: [("shard", shard)]).record(count)
    }

    /// A connection to the shard was lost (either role).
    func shardReconnect(_ shard: String) {
        Metrics.Counter(label: "chatmesh_redis_shard_reconnects_total", dimensions: [("shard", shard)]).increment()
    }

    /// A MOVED reply from the shard (to a SPUBLISH or SSUBSCRIBE).
    func moved(_ shard: String) {
        Metrics.Counter(label: "chatmesh_redis_moved_total", dimensions: [("shard", shard)]).increment()
    }

    /// Redis unsubscribed a channel by itself: its slot moved away from the shard.
    func slotMovedAway(_ shard: String) {
        Metrics.Counter(label: "chatmesh_redis_sunsubscribed_total", dimensions: [("shard", shard)]).increment()
    }

    /// CLUSTER SLOTS reads; result: ok, error (malformed reply or an error reply),
    /// not_cluster (a seed with cluster support disabled), unreachable.
    func topologyRefresh(_ result: String) {
        Metrics.Counter(label: "chatmesh_redis_topology_refresh_total", dimensions: [("result", result)]).increment()
    }

    /// A say retried later because the cluster answered CLUSTERDOWN or TRYAGAIN.
    func clusterRetry(_ reason: String) {
        Metrics.Counter(label: "chatmesh_redis_cluster_retries_total", dimensions: [("reason", reason)]).increment()
    }
}
