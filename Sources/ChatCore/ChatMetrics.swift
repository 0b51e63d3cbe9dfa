import Metrics

/// The chat layer's metrics, created once after the metrics backend is bootstrapped.
public final class ChatMetrics: Sendable {
    public let deliveries: Counter
    public let bytesSent: Counter
    public let joins: Counter
    public let says: Counter
    public let otherEvents: Counter

    public init() {
        deliveries = Counter(label: "chatmesh_deliveries_total")
        bytesSent = Counter(label: "chatmesh_bytes_sent_total")
        joins = Counter(label: "chatmesh_events_received_total", dimensions: [("event", "join")])
        says = Counter(label: "chatmesh_events_received_total", dimensions: [("event", "say")])
        otherEvents = Counter(label: "chatmesh_events_received_total", dimensions: [("event", "other")])
        for reason in ChatError.Reason.allCases {
            // Registered up front so every reason shows in /metrics from the start, at 0.
            _ = Counter(label: "chatmesh_errors_total", dimensions: [("reason", reason.rawValue)])
        }
    }

    /// Counts one error by reason; the reasons are chat reasons or transport-level ones
    /// (`parse_error`, `payload_too_large`, `outbound_overflow`, …). Only on the error path.
    public func countError(_ reason: String) {
        Counter(label: "chatmesh_errors_total", dimensions: [("reason", reason)]).increment()
    }
}
