import ChatCore
import Metrics
import Prometheus

/// The node's Prometheus registry and the transport-level metrics; chat-level metrics live in
/// `ChatMetrics`. Gauges that are cheaper to read than to maintain are set at scrape time.
final class ServerMetrics: Sendable {
    let registry: PrometheusCollectorRegistry
    let chat: ChatMetrics
    let connections: Metrics.Gauge
    let rooms: Metrics.Gauge
    let bytesReceived: Metrics.Counter

    /// Bootstraps swift-metrics with a Prometheus backend once per process.
    static let sharedRegistry: PrometheusCollectorRegistry = {
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        return registry
    }()

    init() {
        registry = Self.sharedRegistry
        chat = ChatMetrics()
        connections = Metrics.Gauge(label: "chatmesh_connections")
        rooms = Metrics.Gauge(label: "chatmesh_rooms")
        bytesReceived = Metrics.Counter(label: "chatmesh_bytes_received_total")
    }

    func countError(_ reason: String) {
        chat.countError(reason)
    }

    func exposition(connectionCount: Int, roomCount: Int) -> [UInt8] {
        connections.record(connectionCount)
        rooms.record(roomCount)
        return registry.emitToBuffer()
    }
}
