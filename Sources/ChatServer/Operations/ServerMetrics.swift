import ChatCore
import Metrics
import NIOConcurrencyHelpers
import Prometheus

/// The node's Prometheus registry and the transport-level metrics; chat-level metrics live in
/// `ChatMetrics`. Gauges that are cheaper to read than to maintain are set at scrape time.
final class ServerMetrics: Sendable {
    let registry: PrometheusCollectorRegistry
    let chat: ChatMetrics
    let connections: Metrics.Gauge
    let rooms: Metrics.Gauge
    let bytesReceived: Metrics.Counter
    /// `chatmesh_connections_cut_total{reason}`: client connections the node closed to defend
    /// itself (no request head within `header_timeout`; room made at the socket cap, or a
    /// connection refused there), and idle keep-alive connections closed (`keepalive_timeout`).
    let connectionCuts: [ClientSocketRegistry.CutReason: Metrics.Counter]
    let clientSockets: Metrics.Gauge
    /// `chatmesh_config_reload_total{result}`: SIGHUP reloads of cluster.conf, "applied" or
    /// "rejected" (the file had an error, or the fanout did not take it; the old config runs on).
    let configReloads: (applied: Metrics.Counter, rejected: Metrics.Counter)
    let clientSocketsUnfinished: Metrics.Gauge
    /// `chatmesh_recovery_*`, only with `[recovery] enabled = on` (made here, after the
    /// backend is bootstrapped, so they are exported).
    let recovery: RecoveryMetrics?
    /// Reads the open and unfinished client sockets at scrape time (set by the node once its
    /// `ConnectionGate` exists).
    private let socketCounts = NIOLockedValueBox<(@Sendable () -> (open: Int, unfinished: Int))?>(nil)

    /// Bootstraps swift-metrics with a Prometheus backend once per process.
    static let sharedRegistry: PrometheusCollectorRegistry = {
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        // A relayed long-poll is held up to the ping interval (25 s by default): the default
        // buckets end at 10 s, which would put every held GET in +Inf.
        factory.durationHistogramBuckets["chatmesh_relay_latency_seconds"] = [
            .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10), .milliseconds(25),
            .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1),
            .seconds(2.5), .seconds(5), .seconds(10), .seconds(20), .seconds(30), .seconds(60),
        ]
        MetricsSystem.bootstrap(factory)
        return registry
    }()

    init(recovery recoveryEnabled: Bool = false) {
        registry = Self.sharedRegistry
        chat = ChatMetrics()
        connections = Metrics.Gauge(label: "chatmesh_connections")
        rooms = Metrics.Gauge(label: "chatmesh_rooms")
        bytesReceived = Metrics.Counter(label: "chatmesh_bytes_received_total")
        // Made up front, so both reasons show in /metrics from the start, at 0.
        connectionCuts = Dictionary(uniqueKeysWithValues: ClientSocketRegistry.CutReason.allCases.map {
            ($0, Metrics.Counter(label: "chatmesh_connections_cut_total", dimensions: [("reason", $0.rawValue)]))
        })
        clientSockets = Metrics.Gauge(label: "chatmesh_client_sockets")
        // Made up front, so both results show in /metrics from the start, at 0.
        configReloads = (
            applied: Metrics.Counter(label: "chatmesh_config_reload_total", dimensions: [("result", "applied")]),
            rejected: Metrics.Counter(label: "chatmesh_config_reload_total", dimensions: [("result", "rejected")])
        )
        clientSocketsUnfinished = Metrics.Gauge(label: "chatmesh_client_sockets_unfinished")
        recovery = recoveryEnabled ? RecoveryMetrics() : nil
    }

    func countCut(_ reason: ClientSocketRegistry.CutReason) {
        connectionCuts[reason]?.increment()
    }

    func countReload(applied: Bool) {
        (applied ? configReloads.applied : configReloads.rejected).increment()
    }

    func observeClientSockets(_ read: @escaping @Sendable () -> (open: Int, unfinished: Int)) {
        socketCounts.withLockedValue { $0 = read }
    }

    func countError(_ reason: String) {
        chat.countError(reason)
    }

    func exposition(connectionCount: Int, roomCount: Int) -> [UInt8] {
        connections.record(connectionCount)
        rooms.record(roomCount)
        if let read = socketCounts.withLockedValue({ $0 }) {
            let counts = read()
            clientSockets.record(counts.open)
            clientSocketsUnfinished.record(counts.unfinished)
        }
        return registry.emitToBuffer()
    }
}
