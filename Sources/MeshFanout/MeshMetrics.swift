import Metrics

/// Mesh metrics. Per-peer series are labelled with the peer's node name (a small, fixed set
/// from cluster.conf); nothing is labelled by room, whose number is unbounded.
final class MeshMetrics: Sendable {
    let peersUp = Metrics.Gauge(label: "chatmesh_mesh_peers_up")
    let buffered = Metrics.Gauge(label: "chatmesh_mesh_pubs_buffered")
    let forwarded = Metrics.Counter(label: "chatmesh_mesh_pubs_forwarded_total")
    let suppressed = Metrics.Counter(label: "chatmesh_mesh_pubs_suppressed_total")
    /// PUBs that fell out of a peer's buffer before they were ever sent: certainly lost.
    let dropped = Metrics.Counter(label: "chatmesh_mesh_pubs_dropped_total")
    /// PUBs that fell out after being sent, before the peer acknowledged them: maybe lost.
    /// The receiving side's `chatmesh_mesh_pubs_gap_total` says exactly how many were.
    let unconfirmed = Metrics.Counter(label: "chatmesh_mesh_pubs_unconfirmed_total")
    let duplicates = Metrics.Counter(label: "chatmesh_mesh_pubs_duplicate_total")
    let gaps = Metrics.Counter(label: "chatmesh_mesh_pubs_gap_total")

    func count(_ dropped: PeerOutbox.Dropped) {
        if dropped.unsent > 0 { self.dropped.increment(by: Int64(dropped.unsent)) }
        if dropped.unconfirmed > 0 { unconfirmed.increment(by: Int64(dropped.unconfirmed)) }
    }

    func rejected(_ reason: String) {
        Metrics.Counter(label: "chatmesh_mesh_link_rejects_total", dimensions: [("reason", reason)]).increment()
    }
}

/// The counters of one peer, created once per peer.
final class PeerMetrics: Sendable {
    let framesIn: Metrics.Counter
    let framesOut: Metrics.Counter
    let bytesIn: Metrics.Counter
    let bytesOut: Metrics.Counter
    let pubsReceived: Metrics.Counter
    let linkUps: Metrics.Counter

    /// `factory`: the process's metrics backend, or a test's.
    init(peer: String, factory: any MetricsFactory = MetricsSystem.factory) {
        func counter(_ label: String, _ dimensions: [(String, String)]) -> Metrics.Counter {
            Metrics.Counter(label: label, dimensions: dimensions, factory: factory)
        }
        framesIn = counter("chatmesh_mesh_frames_total", [("peer", peer), ("direction", "in")])
        framesOut = counter("chatmesh_mesh_frames_total", [("peer", peer), ("direction", "out")])
        bytesIn = counter("chatmesh_mesh_bytes_total", [("peer", peer), ("direction", "in")])
        bytesOut = counter("chatmesh_mesh_bytes_total", [("peer", peer), ("direction", "out")])
        pubsReceived = counter("chatmesh_mesh_pubs_received_total", [("peer", peer)])
        linkUps = counter("chatmesh_mesh_link_ups_total", [("peer", peer)])
    }
}
