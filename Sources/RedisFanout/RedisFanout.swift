import ChatCore
import ClusterConfig
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import SocketIO

/// The original topology: Redis pub/sub with channel = room id (plus an optional prefix) and
/// payload = the JSON the original Node servers publish, so chatmesh nodes and original nodes
/// on one Redis share rooms.
///
/// One subscriber connection (SUBSCRIBE when a room gets its first local member, UNSUBSCRIBE
/// when its last leaves) and one pipelined publisher connection. Local members get messages
/// only from the Redis echo, as in the original, so every node sees one order per room.
/// While Redis is unreachable, says are kept in order (bounded by count and age) and
/// published after reconnect; after a reconnect every room is subscribed again.
///
/// Redis keeps nothing for channels without subscribers, so a say is published only once this
/// node's SUBSCRIBE for its room is confirmed (else the room's first joiner could miss its own
/// join), and after a (re)connect only after a grace period in which the other nodes, whose
/// redial backoff is capped below it, resubscribe too.
///
/// A `rediss://` url puts TLS under both connections (`RedisTLSClient`, one context for
/// both); a TLS failure is logged once per reason until a connection succeeds, counted in
/// `chatmesh_redis_tls_failures_total{reason}`, shown in /healthz, and retried with backoff.
///
/// The url may name several nodes (`url.seeds`: `mode = classic` on a Redis Cluster, which
/// broadcasts classic pub/sub to every node): each connection dials them in turn, moving to
/// the next when a connect fails or the connection is lost, so one dead node does not stop
/// the rooms.
// @unchecked: every var, and drainWaiters, is touched only on `eventLoop`; readiness, read anywhere, is locked.
public final class RedisFanout: Fanout, RedisLinkOwner, @unchecked Sendable {
    public let eventLoop: any EventLoop
    let logger: Logger
    let metrics = RedisMetrics()
    private let url: RedisURL
    private let channelPrefix: String
    private var bufferMessages: Int
    private var bufferTime: TimeAmount
    /// The nodes to dial, in turn; and which one each connection dials next.
    private let addresses: [HostPort]
    private var addressIndex = PerRole(0)
    /// The TLS context for `rediss://`, or why its files cannot be used (thrown by `start`).
    private let tls: Result<RedisTLSClient, RedisTLSSetupError>?
    /// TLS failure reasons logged since a connection last succeeded.
    private var loggedTLSFailures: Set<String> = []
    /// The last TLS failure, for /healthz while Redis is down; read anywhere, so locked.
    private let lastTLSFailure = NIOLockedValueBox<RedisTLSFailure?>(nil)

    private struct PendingPublish {
        var room: String
        var channel: String
        var payload: String
        var enqueuedAt: UInt64
    }

    private enum PublisherReply {
        case publish(PendingPublish)
        case ping
    }

    /// Cap of the redial backoff, and the pause before publishing after a (re)connect: every
    /// node sees Redis return within one cap, so their subscriptions are back by then.
    static let reconnectCap = TimeAmount.seconds(1)
    static let publishGrace = reconnectCap + .milliseconds(200)

    private var delivery: (any FanoutDelivery)?
    private var localRooms: Set<String> = []
    private var subscriber: RedisLink?
    private var publisher: RedisLink?
    private var outbox = CircularBuffer<PendingPublish>()
    /// Commands written to the publisher whose replies have not come back, in order.
    private var awaitingReply = CircularBuffer<PublisherReply>()
    private var backoff = PerRole(ReconnectBackoff(cap: RedisFanout.reconnectCap))
    private var connecting: Set<RedisLink.Role> = []
    private var lastHeard = PerRole<NIODeadline?>(nil)
    private var timer: RepeatedTask?
    private var stopping = false
    /// Channels whose SUBSCRIBE Redis has confirmed on the current subscriber connection.
    private var confirmedChannels: Set<String> = []
    /// No publishing before this (grace after the subscriber (re)connected).
    /// On the loop's clock (`eventLoop.now`: the monotonic clock, unless a test drives it).
    private var publishNotBefore = NIODeadline.distantFuture
    private let readiness = NIOLockedValueBox(false)
    /// Drains waiting for every say to be published and answered.
    private let drainWaiters: DrainWaiters

    static let heartbeatInterval = TimeAmount.seconds(1)
    /// A link that answered nothing for this long is closed and dialed again (a closed socket is
    /// seen at once; this is for one that went quiet). 10 s, not 3: on a saturated 2-core machine
    /// a live Redis and a busy node took over 3 s to get a PONG read (the publisher, idle once its
    /// PUBLISHes were answered, hears only PONGs), and the reset resent answered PUBLISHes twice.
    static let silenceLimit = TimeAmount.seconds(10)
    /// A late heartbeat (the loop was busy) does not judge silence: see `HeartbeatPunctuality`.
    private var heartbeatPunctuality = HeartbeatPunctuality(interval: RedisFanout.heartbeatInterval)

    /// `tls`: the `[redis]` TLS files; used when `url` is `rediss://` (nil there: the system's
    /// CAs, no client certificate).
    public init(url: RedisURL, tls: RedisTLSSettings? = nil, channelPrefix: String, bufferMessages: Int, bufferTime: TimeAmount,
                eventLoop: any EventLoop, logger: Logger) {
        self.url = url
        self.addresses = url.seeds.isEmpty ? [HostPort(host: url.host, port: url.port)] : url.seeds
        if url.tls {
            let settings = tls ?? RedisTLSSettings()
            self.tls = Result { () throws(RedisTLSSetupError) in try RedisTLSClient(settings: settings, host: url.host) }
        } else {
            self.tls = nil
        }
        self.channelPrefix = channelPrefix
        self.bufferMessages = max(1, bufferMessages)
        self.bufferTime = bufferTime
        self.eventLoop = eventLoop
        self.drainWaiters = DrainWaiters(eventLoop: eventLoop)
        self.logger = logger
    }

    /// True once the subscriber connection is up and has (re)subscribed every room: a node
    /// without it would not see any room, so it is not ready.
    public var health: FanoutHealth {
        let isReady = readiness.withLockedValue { $0 }
        let state = isReady ? "up" : "down"
        var details: [(String, JSONValue)] = [("redis", .string(state))]
        if !isReady, let failure = lastTLSFailure.withLockedValue({ $0 }) {
            details.append(("redis_tls_error", .string(failure.reason)))
        }
        return FanoutHealth(isReady: isReady, statusLine: "redis \(state)", details: details)
    }

    /// Redis mode does not relay: every request of a session must reach its owner (`ip_hash`).
    public var relay: (any SessionRelay)? { nil }

    /// Starts connecting; an unreachable Redis is retried with backoff. Throws only when a
    /// `[redis]` TLS file cannot be used (`RedisTLSSetupError`).
    public func start(_ context: FanoutStartContext) throws {
        if case .failure(let error) = tls { throw error }
        eventLoop.execute { [self] in
            connect(.subscriber)
            connect(.publisher)
            timer = eventLoop.scheduleRepeatedTask(initialDelay: Self.heartbeatInterval, delay: Self.heartbeatInterval) { [weak self] _ in
                self?.heartbeat()
            }
        }
    }

    /// Completes once every say is published and answered, or at the deadline. Used when
    /// draining, so no acknowledged say is lost. The reply (or the buffer expiry) that leaves
    /// nothing outstanding completes it (`settleDrainsIfAnswered`).
    public func drain(deadline: NIODeadline) -> EventLoopFuture<Void> {
        eventLoop.flatSubmit { [self] in
            allAnswered ? eventLoop.makeSucceededFuture(true) : drainWaiters.wait(until: deadline)
        }.map { [self] answered in
            if !answered { logger.warning("redis drain deadline passed with says not yet published") }
        }
    }

    private var allAnswered: Bool { outbox.isEmpty && awaitingReply.isEmpty }

    /// Called after every event that can leave nothing outstanding.
    private func settleDrainsIfAnswered() {
        if !drainWaiters.isEmpty && allAnswered { drainWaiters.settle() }
    }

    public func stop() -> EventLoopFuture<Void> {
        eventLoop.submit { [self] in
            stopping = true
            timer?.cancel()
            flushPublisher()
            for link in [subscriber, publisher] { link?.channel?.close(promise: nil) }
        }
    }

    // MARK: Connections

    private func connect(_ role: RedisLink.Role) {
        guard !stopping, !connecting.contains(role) else { return }
        connecting.insert(role)
        let address = addresses[addressIndex[role] % addresses.count]
        // The channel is made on this loop, so the handler never leaves it.
        let tlsClient = try? tls?.get()
        let link = NIOLoopBound(RedisLink(role: role, owner: self, setup: RedisDialer.setupCommands(for: url),
                                          overTLS: tlsClient != nil, address: address),
                                eventLoop: eventLoop)
        RedisDialer.dial(address, tls: tlsClient, link: link, on: eventLoop).whenComplete { [self] result in
            if case .failure(let error) = result {
                connecting.remove(role)
                logger.warning("redis unreachable", metadata: ["role": "\(role.rawValue)", "address": "\(address)", "error": "\(error)"])
                rotateAddress(role)
                scheduleReconnect(role)
            }
        }
    }

    /// The next dial of `role` goes to the next node of the url (a no-op with one node).
    private func rotateAddress(_ role: RedisLink.Role) {
        guard addresses.count > 1 else { return }
        addressIndex[role] = (addressIndex[role] + 1) % addresses.count
    }

    private func scheduleReconnect(_ role: RedisLink.Role) {
        guard !stopping else { return }
        eventLoop.scheduleTask(in: backoff[role].nextDelay()) { [self] in connect(role) }
    }

    func linkReady(_ link: RedisLink) {
        connecting.remove(link.role)
        if !loggedTLSFailures.isEmpty {
            logger.info("redis TLS connection established", metadata: ["role": "\(link.role.rawValue)"])
            loggedTLSFailures.removeAll()
        }
        lastTLSFailure.withLockedValue { $0 = nil }
        backoff[link.role].reset()
        lastHeard[link.role] = .now()
        switch link.role {
        case .subscriber:
            subscriber = link
            let channels = localRooms.map { channelPrefix + $0 }
            for chunk in stride(from: 0, to: channels.count, by: 1000) {
                let part = channels[chunk..<min(chunk + 1000, channels.count)]
                link.send([.string("SUBSCRIBE")] + part.map { .string($0) }, flush: false)
            }
            link.flush()
            readiness.withLockedValue { $0 = true }
            metrics.up.record(1)
            logger.info("redis subscriber ready", metadata: ["rooms": "\(channels.count)"])
            publishNotBefore = eventLoop.now + Self.publishGrace
            eventLoop.scheduleTask(in: Self.publishGrace) { [self] in flushPublisher() }
        case .publisher:
            publisher = link
            logger.info("redis publisher ready", metadata: ["buffered": "\(outbox.count)"])
            flushPublisher()
        case .query:
            link.fail("no query links here")
        }
    }

    func linkClosed(_ link: RedisLink) {
        switch link.role {
        case .subscriber where subscriber === link:
            subscriber = nil
            confirmedChannels.removeAll()
            publishNotBefore = .distantFuture
            readiness.withLockedValue { $0 = false }
            metrics.up.record(0)
        case .publisher where publisher === link:
            publisher = nil
            // PUBLISHes without a reply may not have reached Redis: send them again, first.
            var requeue = CircularBuffer<PendingPublish>()
            for reply in awaitingReply { if case .publish(let pending) = reply { requeue.append(pending) } }
            awaitingReply.removeAll()
            requeue.append(contentsOf: outbox)
            outbox = requeue
        default:
            break
        }
        connecting.remove(link.role)
        guard !stopping else { return }
        metrics.reconnects.increment()
        // A TLS failure was already said (once per reason), not on every redial.
        if link.tlsFailure == nil {
            logger.warning("redis connection lost", metadata: ["role": "\(link.role.rawValue)", "address": "\(link.addressText)"])
        }
        rotateAddress(link.role)
        scheduleReconnect(link.role)
    }

    /// What `error` on a `rediss://` connection means, or nil when it is not about TLS.
    func tlsFailure(for error: any Error, on link: RedisLink, duringHandshake: Bool) -> RedisTLSFailure? {
        RedisTLSFailure.classify(error, host: link.address?.host ?? url.host, duringHandshake: duringHandshake,
                                 presentsClientCertificate: (try? tls?.get())?.presentsClientCertificate ?? false)
    }

    /// A connection's TLS failed: counted every time, logged once per reason until a
    /// connection succeeds (the redial every second would repeat it), shown in /healthz.
    func tlsFailed(_ failure: RedisTLSFailure, on link: RedisLink, detail: String?) {
        metrics.errors.increment()
        metrics.tlsFailure(reason: failure.reason)
        lastTLSFailure.withLockedValue { $0 = failure }
        var metadata: Logger.Metadata = [
            "role": "\(link.role.rawValue)", "address": "\(link.address ?? HostPort(host: url.host, port: url.port))", "reason": "\(failure.reason)",
        ]
        if let detail { metadata["error"] = "\(detail)" }
        if loggedTLSFailures.insert(failure.reason).inserted {
            logger.error("redis TLS handshake failed: \(failure.message)", metadata: metadata)
        } else {
            logger.debug("redis TLS handshake failed again: \(failure.message)", metadata: metadata)
        }
    }

    func heard(from link: RedisLink) {
        lastHeard[link.role] = .now()
    }

    func linkReset(_ link: RedisLink, reason: String) {
        metrics.errors.increment()
    }

    func received(_ value: RESPValue, on link: RedisLink) {
        switch link.role {
        case .publisher:
            guard let owed = awaitingReply.popFirst() else {
                return link.fail("unexpected reply \(RedisLink.describe(value))")
            }
            if case .error(let message) = value {
                metrics.errors.increment()
                logger.error("redis refused a command", metadata: ["error": "\(message)"])
            } else if case .publish = owed {
                metrics.published.increment()
            }
            settleDrainsIfAnswered()
        case .query:
            break // this fanout asks no questions
        case .subscriber:
            guard case .array(let parts?) = value, let kind = parts.first?.string else {
                if case .error(let message) = value {
                    metrics.errors.increment()
                    logger.error("redis subscriber error", metadata: ["error": "\(message)"])
                }
                return
            }
            if kind == "message", parts.count == 3, let channel = parts[1].string, let payload = parts[2].bytes {
                deliver(channel: channel, payload: payload)
            } else if kind == "subscribe", parts.count == 3, let channel = parts[1].string {
                confirmedChannels.insert(channel)
                flushPublisher()
            } else if kind == "unsubscribe", parts.count == 3, let channel = parts[1].string {
                confirmedChannels.remove(channel)
            }
            // Pongs need no action.
        }
    }

    /// A message from Redis may come from any publisher: it is delivered only if it is the
    /// original JSON shape, re-serialized exactly as the Node server's emit would send it.
    private func deliver(channel: String, payload: ByteBuffer) {
        guard let broadcast = RedisChatPayload.broadcast(channel: channel, payload: payload, channelPrefix: channelPrefix,
                                                         metrics: metrics, logger: logger) else { return }
        delivery?.deliverLocally(broadcast)
    }

    /// Publishes what waits, in order, as far as it may: the publisher is up, the grace after
    /// the subscriber's (re)connect has passed, and each say's room, if it has local members,
    /// is confirmed subscribed.
    private func flushPublisher() {
        guard let publisher, !outbox.isEmpty, eventLoop.now >= publishNotBefore else { return }
        var wrote = false
        // A room with local members needs its SUBSCRIBE in effect (they get the say from the
        // echo); one without (a quit after its last member left) may go at once.
        while let pending = outbox.first, !localRooms.contains(pending.room) || confirmedChannels.contains(pending.channel) {
            outbox.removeFirst()
            publisher.send(["PUBLISH", .string(pending.channel), .string(pending.payload)], flush: false)
            awaitingReply.append(.publish(pending))
            wrote = true
        }
        if wrote {
            publisher.flush()
            metrics.buffered.record(outbox.count)
        }
    }

    /// PINGs both connections; a connection silent past the limit is closed and reconnected.
    /// Ages out what waits for a publisher that is down.
    private func heartbeat() {
        let now = NIODeadline.now()
        let onTime = heartbeatPunctuality.beat(at: now)
        for link in [subscriber, publisher].compactMap({ $0 }) {
            if onTime, let heard = lastHeard[link.role], now - heard > Self.silenceLimit {
                link.fail("no reply for \(Self.silenceLimit.nanoseconds / 1_000_000_000) s")
                continue
            }
            link.send(["PING"])
            if link.role == .publisher { awaitingReply.append(.ping) }
        }
        if publisher == nil || subscriber == nil {
            let deadline = (now - bufferTime).uptimeNanoseconds
            var dropped = 0
            while let first = outbox.first, first.enqueuedAt < deadline {
                outbox.removeFirst()
                dropped += 1
            }
            if dropped > 0 {
                metrics.dropped.increment(by: Int64(dropped))
                logger.warning("redis outage outlasted the buffer: says dropped", metadata: ["dropped": "\(dropped)"])
                settleDrainsIfAnswered()
            }
        }
        metrics.buffered.record(outbox.count)
    }

    /// Takes new `[redis] buffer_messages` / `buffer_ms` (a reload): what waits beyond the new
    /// count is dropped, oldest first; the new age applies at the next heartbeat. The string
    /// is a line for the log.
    public func applyBuffer(messages: Int, time: TimeAmount) -> EventLoopFuture<String> {
        eventLoop.submit { [self] in
            let old = "\(bufferMessages) messages, \(bufferTime.nanoseconds / 1_000_000) ms"
            bufferMessages = max(1, messages)
            bufferTime = time
            var dropped = 0
            while outbox.count > bufferMessages {
                outbox.removeFirst()
                dropped += 1
            }
            if dropped > 0 {
                metrics.dropped.increment(by: Int64(dropped))
                settleDrainsIfAnswered()
            }
            metrics.buffered.record(outbox.count)
            let new = "\(bufferMessages) messages, \(bufferTime.nanoseconds / 1_000_000) ms"
            return "redis buffer: \(old) -> \(new)" + (dropped > 0 ? " (\(dropped) buffered says dropped)" : "")
        }
    }

    // MARK: Fanout

    public func start(delivery: any FanoutDelivery) {
        self.delivery = delivery
    }

    public func subscribe(room: String) {
        onLoop { [self] in
            guard localRooms.insert(room).inserted else { return }
            // An UNSUBSCRIBE for this room may still be in flight: its old confirmation no
            // longer counts; says wait for this SUBSCRIBE's (Redis answers in order).
            confirmedChannels.remove(channelPrefix + room)
            subscriber?.send(["SUBSCRIBE", .string(channelPrefix + room)])
        }
    }

    public func unsubscribe(room: String) {
        onLoop { [self] in
            guard localRooms.remove(room) != nil else { return }
            confirmedChannels.remove(channelPrefix + room)
            subscriber?.send(["UNSUBSCRIBE", .string(channelPrefix + room)])
        }
    }

    public func publish(_ message: ChatMessage) {
        let pending = PendingPublish(room: message.room, channel: channelPrefix + message.room, payload: message.eventJSON,
                                     enqueuedAt: NIODeadline.now().uptimeNanoseconds)
        onLoop { [self] in
            outbox.append(pending)
            if outbox.count > bufferMessages {
                outbox.removeFirst()
                metrics.dropped.increment()
            }
            flushPublisher()
        }
    }

    /// Always queued, never run inline, even on this loop: subscribe, unsubscribe and publish
    /// arrive from every event loop in the order the hub counted them, and a call run inline
    /// would overtake one already queued. (A room that emptied on another loop and refilled on
    /// this one ended unsubscribed: its new member never got a message from another node.)
    private func onLoop(_ work: @escaping @Sendable () -> Void) {
        eventLoop.execute(work)
    }
}
