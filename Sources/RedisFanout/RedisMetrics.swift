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
}
