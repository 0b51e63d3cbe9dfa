import ChatCore
import Metrics
import NIOCore

/// The relay's metrics (docs/RELAY.md): `chatmesh_relay_requests_total{kind,result}` on both
/// sides (the relay counts what it sent, the owner what it got), and on the relay side
/// `chatmesh_relay_latency_seconds{kind}`, from RELAY_REQUEST written to RELAY_REPLY read
/// (GET and POST; a held long-poll's time is its hold). Every series is made up front, so each
/// shows in /metrics from the start, at 0; counting touches no lock.
final class RelayMetrics: Sendable {
    enum Result: String, CaseIterable {
        /// Answered: a reply with a 1xx to 3xx status, or a stream the owner took.
        case ok
        /// No such session: no live owner for the sid's tag, or the owner's 400 code 1 (or 4404 for a stream).
        case unknownSid = "unknown_sid"
        /// The link went down while the request was in flight.
        case peerDown = "peer_down"
        /// Over a cap (requests in flight per link, or on the owner per session).
        case refused
        /// The client went away (RELAY_CLOSE from the relay before the reply).
        case cancelled
        /// Any other answer (an Engine.IO error other than an unknown session).
        case error
    }

    private let requests: [RelayKind: [Result: Counter]]
    private let latency: [RelayKind: Metrics.Timer]
    /// Relay frames that cannot be right (a reply nobody asked for, a reused id, …): each closed
    /// its link. Counted with the mesh's other link rejects.
    let protocolViolations: Counter

    /// `factory`: the process's metrics backend, or a test's.
    init(factory: any MetricsFactory = MetricsSystem.factory) {
        requests = Dictionary(uniqueKeysWithValues: RelayKind.allCases.map { kind in
            (kind, Dictionary(uniqueKeysWithValues: Result.allCases.map { result in
                (result, Counter(label: "chatmesh_relay_requests_total",
                                 dimensions: [("kind", kind.metricLabel), ("result", result.rawValue)], factory: factory))
            }))
        })
        latency = Dictionary(uniqueKeysWithValues: [RelayKind.get, .post].map { kind in
            (kind, Metrics.Timer(label: "chatmesh_relay_latency_seconds", dimensions: [("kind", kind.metricLabel)],
                                 factory: factory))
        })
        protocolViolations = Counter(label: "chatmesh_mesh_link_rejects_total", dimensions: [("reason", "relay_protocol")],
                                     factory: factory)
    }

    func count(_ kind: RelayKind, _ result: Result) {
        requests[kind]?[result]?.increment()
    }

    /// A reply received after `sent`: counted by what it says, and timed.
    func replied(_ kind: RelayKind, _ reply: RelayReply, sent: NIODeadline) {
        count(kind, Self.result(of: reply))
        latency[kind]?.recordNanoseconds((NIODeadline.now() - sent).nanoseconds)
    }

    /// What an owner's reply says: answered, no such session (Engine.IO error code 1), or another error.
    static func result(of reply: RelayReply) -> Result {
        if reply.status < 400 { return .ok }
        let unknownSid = #"{"code":1,"#.utf8
        let prefix = reply.body.readableBytesView.prefix(unknownSid.count)
        return prefix.elementsEqual(unknownSid) ? .unknownSid : .error
    }
}
