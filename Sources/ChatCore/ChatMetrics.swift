import Metrics
import NIOConcurrencyHelpers

/// The chat layer's metrics, created once after the metrics backend is bootstrapped.
public final class ChatMetrics: Sendable {
    public let deliveries: Counter
    public let bytesSent: Counter
    public let joins: Counter
    public let says: Counter
    public let otherEvents: Counter
    /// One counter per error reason, made on first use: a client repeating an error (a flood
    /// of `rate_limited`) must not make a counter per error. Reasons are fixed strings of the
    /// code, so the table stays small.
    private let errorCounters: NIOLockedValueBox<[String: Counter]>

    public init() {
        deliveries = Counter(label: "chatmesh_deliveries_total")
        bytesSent = Counter(label: "chatmesh_bytes_sent_total")
        joins = Counter(label: "chatmesh_events_received_total", dimensions: [("event", "join")])
        says = Counter(label: "chatmesh_events_received_total", dimensions: [("event", "say")])
        otherEvents = Counter(label: "chatmesh_events_received_total", dimensions: [("event", "other")])
        // Chat reasons are registered up front so each shows in /metrics from the start, at 0.
        errorCounters = NIOLockedValueBox(Dictionary(uniqueKeysWithValues: ChatError.Reason.allCases.map {
            ($0.rawValue, Counter(label: "chatmesh_errors_total", dimensions: [("reason", $0.rawValue)]))
        }))
    }

    /// Counts one error by reason; the reasons are chat reasons or transport-level ones
    /// (`parse_error`, `payload_too_large`, `outbound_overflow`, …). Only on the error path.
    public func countError(_ reason: String) {
        let counter = errorCounters.withLockedValue { counters in
            if let counter = counters[reason] { return counter }
            let counter = Counter(label: "chatmesh_errors_total", dimensions: [("reason", reason)])
            counters[reason] = counter
            return counter
        }
        counter.increment()
    }
}
