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

    /// A say this node published here for a room it has members in, acknowledged or not,
    /// whose echo (the `smessage` on this node's subscriber) has not come back yet.
    struct EchoWait {
        var publish: RedisClusterPublish
        /// The SPUBLISH reply came (Redis executed it).
        var acked = false
        /// The subscriber connection went before the echo: to send again once acknowledged.
        var echoLost = false
    }

    /// Per channel, in send order: an acknowledged say is not taken as delivered before its
    /// echo, since a primary killed right after answering SPUBLISH may not have written the
    /// message to every subscriber yet (Redis flushes client buffers one by one).
    private(set) var awaitingEcho: [String: CircularBuffer<EchoWait>] = [:]

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

    /// `publish` was written to the publisher; its room is subscribed here. Past `limit` says
    /// waiting for the channel's echo, the oldest is no longer waited for.
    func expectEcho(_ publish: RedisClusterPublish, limit: Int) {
        // Mutated in place (a copy would cost the whole queue per say).
        awaitingEcho[publish.channel, default: []].append(EchoWait(publish: publish))
        while let count = awaitingEcho[publish.channel]?.count, count > max(1, limit) {
            awaitingEcho[publish.channel]?.removeFirst()
        }
    }

    /// An `smessage` for `channel`: takes the first say waiting with these exact bytes. (An
    /// identical payload published by another node would take it early; payloads carry their
    /// sender and text, so that needs the same say from two nodes at the same instant.)
    func heardEcho(channel: String, payload: ByteBuffer) {
        guard let index = awaitingEcho[channel]?.firstIndex(where: {
            payload.readableBytesView.elementsEqual($0.publish.payload.utf8)
        }) else { return }
        awaitingEcho[channel]?.remove(at: index)
        if awaitingEcho[channel]?.isEmpty == true { awaitingEcho[channel] = nil }
    }

    /// The SPUBLISH reply for `publish` came: it is sent again if its echo can no longer come
    /// (returned), else it waits for the echo (or was echoed already).
    func acknowledged(_ publish: RedisClusterPublish) -> RedisClusterPublish? {
        guard let index = awaitingEcho[publish.channel]?.firstIndex(where: { $0.publish.sequence == publish.sequence }) else {
            return nil
        }
        guard awaitingEcho[publish.channel]?[index].echoLost == true else {
            awaitingEcho[publish.channel]?[index].acked = true
            return nil
        }
        awaitingEcho[publish.channel]?.remove(at: index)
        if awaitingEcho[publish.channel]?.isEmpty == true { awaitingEcho[publish.channel] = nil }
        return Self.fresh(publish)
    }

    /// `publish` was refused or lost unanswered (it goes again by the outbox): no echo.
    func forgetEcho(_ publish: RedisClusterPublish) {
        guard var waits = awaitingEcho[publish.channel] else { return }
        waits.removeAll { $0.publish.sequence == publish.sequence }
        awaitingEcho[publish.channel] = waits.isEmpty ? nil : waits
    }

    /// The echoes of `channel` (nil: every channel) can no longer come (the subscriber or the
    /// subscription is gone): the acknowledged says are returned, in order, to be sent again;
    /// the unacknowledged ones are sent again when their reply comes (or by the outbox if
    /// the publisher is lost too).
    func echoesLost(channel: String?) -> [RedisClusterPublish] {
        var resend: [RedisClusterPublish] = []
        for key in channel.map({ [$0] }) ?? Array(awaitingEcho.keys) {
            guard var waits = awaitingEcho[key] else { continue }
            resend += waits.filter(\.acked).map { Self.fresh($0.publish) }
            waits.removeAll(where: \.acked)
            for index in waits.indices { waits[index].echoLost = true }
            awaitingEcho[key] = waits.isEmpty ? nil : waits
        }
        return resend.sorted { $0.sequence < $1.sequence }
    }

    /// Stops waiting for the echoes of `channel` (its room has no local member any more).
    func releaseEchoes(channel: String) {
        awaitingEcho[channel] = nil
    }

    /// Stops waiting for echoes of says handed over before `deadline` (the buffer's age bound).
    func releaseEchoes(enqueuedBefore deadline: UInt64) {
        for (channel, var waits) in awaitingEcho {
            waits.removeAll { $0.publish.enqueuedAt < deadline }
            awaitingEcho[channel] = waits.isEmpty ? nil : waits
        }
    }

    private static func fresh(_ publish: RedisClusterPublish) -> RedisClusterPublish {
        var publish = publish
        publish.askTarget = nil
        publish.redirects = 0
        return publish
    }

    /// The publisher connection is gone: what it had in flight, in order (to send again).
    func publisherLost() -> [RedisClusterPublish] {
        publisher = nil
        var unanswered: [RedisClusterPublish] = []
        for reply in awaitingReply {
            if case .publish(var publish) = reply {
                forgetEcho(publish)
                publish.askTarget = nil
                unanswered.append(publish)
            }
        }
        awaitingReply.removeAll()
        return unanswered
    }
}
