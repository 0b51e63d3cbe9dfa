import ChatCore
import ClusterConfig
import Metrics
import NIOCore

/// Everything this node knows about one other node: its address, whether we dial it, the live
/// link if any, the rooms it has members in, the PUBs it has not acknowledged, and what it
/// sent us. Lives on the mesh event loop and outlives any one link.
final class PeerState {
    let name: String
    /// Its `mesh` address; a reload may change it (`MeshFanout.apply`).
    var address: HostPort
    /// The smaller node name dials the larger one.
    let weDial: Bool
    let metrics: PeerMetrics

    var link: PeerLinkHandler?
    /// The epoch of the peer's process on the current (or, while down, the last) link.
    var linkEpoch: UInt64 = 0
    /// `MessageOrigin.originID(epoch: linkEpoch)`: the origin of the PUB_STAMPEDs it sends.
    var originID: UInt32 = 0
    /// Recovery is on here and not there, or the other way round (a cluster changing its
    /// config): said once per peer, at info.
    var toldMixedRecovery = false
    /// Rooms the peer has local members in (its SNAPSHOT, then SUB / UNSUB). Kept while the
    /// link is down, so PUBs for those rooms are buffered for it.
    var interest: Set<String> = []
    var outbox: PeerOutbox
    var inbound = InboundSequence()
    var lastHeard: NIODeadline = .now()
    var backoff: ReconnectBackoff
    var dialing = false
    /// The next dial (the first, spread at start, or a redial after the backoff's delay).
    var redialTimer: Scheduled<Void>?
    /// When `redialTimer` fires (nil when none is set).
    var nextDialAt: NIODeadline?
    /// PUBs delivered since our last ACK to this peer.
    var unacknowledged = 0
    var ackTimer: Scheduled<Void>?
    /// A reload took it out of cluster.conf: nothing dials it again, and a dial still under way
    /// is closed when it connects.
    var removed = false

    init(name: String, address: HostPort, weDial: Bool, bufferMessages: Int, reconnectMax: TimeAmount,
         metricsFactory: any MetricsFactory = MetricsSystem.factory) {
        self.name = name
        self.address = address
        self.weDial = weDial
        self.metrics = PeerMetrics(peer: name, factory: metricsFactory)
        self.outbox = PeerOutbox(maxMessages: bufferMessages)
        self.backoff = ReconnectBackoff(cap: reconnectMax)
    }

    var isUp: Bool { link != nil }
}
