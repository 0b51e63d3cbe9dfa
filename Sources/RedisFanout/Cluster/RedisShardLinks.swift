import ChatCore
import ClusterConfig
import NIOCore

/// One cluster node as the fanout uses it: a subscriber connection (SSUBSCRIBE of the local
/// rooms whose slots the node owns) and a pipelined publisher connection (SPUBLISH), with
/// what each has in flight. Confined to the cluster fanout's event loop, like the fanout.
final class RedisShardLinks {
    enum PublisherReply {
        case publish(RedisClusterPublish)
        /// `ASKING`, sent just before a publish an `-ASK` sent here.
        case asking
        case ping
    }

    let address: HostPort
    /// A primary of the current topology (or named by a MOVED): its subscriber holds rooms.
    /// False for a node only an ASK named, and for one that left the topology.
    var ownsSlots: Bool
    /// Left the topology: closed, not redialled, forgotten once both links are down.
    var retired = false

    /// Set from the dial on (so a link that is not nil is connecting or up) until it closes.
    var subscriber: RedisLink?
    var publisher: RedisLink?
    var backoff = PerRole(ReconnectBackoff(cap: RedisClusterFanout.reconnectCap))
    var lastHeard = PerRole<NIODeadline?>(nil)

    /// Commands written to the publisher whose replies have not come back, in order.
    var awaitingReply = CircularBuffer<PublisherReply>()
    /// Channels SSUBSCRIBEd on the current subscriber connection, and those Redis confirmed.
    var subscribed: Set<String> = []
    var confirmed: Set<String> = []
    /// SUNSUBSCRIBEs this node sent and Redis has not answered: any other `sunsubscribe` is
    /// Redis saying the slot moved away.
    var unsubscribesOwed: [String: Int] = [:]
    /// No publishing here before this: the grace after the subscriber (re)connected, in which
    /// every other chatmesh node resubscribes here too (distant while the subscriber is down).
    var graceUntil = NIODeadline.distantFuture
    /// Nor before this: the backoff after a CLUSTERDOWN / TRYAGAIN.
    var retryNotBefore = NIODeadline.uptimeNanoseconds(0)
    /// Backoff of CLUSTERDOWN / TRYAGAIN retries; reset by the next acknowledged publish.
    var retryBackoff = ReconnectBackoff(base: .milliseconds(100), cap: .seconds(2))
    /// Whether a CLUSTERDOWN / TRYAGAIN was logged since the last acknowledged publish.
    var loggedRetry = false
    /// Whether "unreachable" was logged since the links were last up (a dead node is redialled
    /// every second; one line says it).
    var loggedUnreachable = false

    init(address: HostPort, ownsSlots: Bool) {
        self.address = address
        self.ownsSlots = ownsSlots
    }

    var subscriberUp: Bool { subscriber?.isReady == true }
    var publisherUp: Bool { publisher?.isReady == true }

    func link(_ role: RedisLink.Role) -> RedisLink? {
        switch role {
        case .subscriber: subscriber
        case .publisher: publisher
        case .query: nil
        }
    }

    func setLink(_ role: RedisLink.Role, _ link: RedisLink?) {
        switch role {
        case .subscriber: subscriber = link
        case .publisher: publisher = link
        case .query: break
        }
    }

    /// Whether says may go out here now (the publisher up, past the grace and any backoff).
    func mayPublish(at now: NIODeadline) -> Bool {
        publisherUp && (!ownsSlots || now >= graceUntil) && now >= retryNotBefore
    }

    /// The subscriber connection is gone: nothing is subscribed there any more.
    func subscriberLost() {
        subscriber = nil
        subscribed.removeAll()
        confirmed.removeAll()
        unsubscribesOwed.removeAll()
        graceUntil = .distantFuture
    }

    /// The publisher connection is gone: what it had in flight, in order (to send again).
    func publisherLost() -> [RedisClusterPublish] {
        publisher = nil
        var unanswered: [RedisClusterPublish] = []
        for reply in awaitingReply {
            if case .publish(var publish) = reply {
                publish.askTarget = nil
                unanswered.append(publish)
            }
        }
        awaitingReply.removeAll()
        return unanswered
    }
}
