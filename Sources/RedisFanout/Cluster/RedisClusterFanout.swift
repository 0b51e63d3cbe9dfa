import ChatCore
import ClusterConfig
import Logging
import NIOConcurrencyHelpers
import NIOCore
import SocketIO

/// Rooms over a Redis Cluster with sharded pub/sub (`mode = sharded`, docs/REDIS-CLUSTER.md):
/// a room's channel lives in one hash slot, so in one shard, and its says go only there
/// (`SPUBLISH`), not to every cluster node as classic `PUBLISH` would.
///
/// The slot map comes from `CLUSTER SLOTS` (asked of the seeds, then of every node it named,
/// in turn). Per primary: a subscriber connection holding `SSUBSCRIBE` of the local rooms
/// whose slots it owns, and a pipelined publisher connection (`RedisShardLinks`). As in
/// `RedisFanout`, local members hear a room only from Redis's echo; a say is published only
/// once its room's `SSUBSCRIBE` is confirmed (when the room has local members) and after a
/// grace once a shard's subscriber (re)connects or a slot changes owner, in which the other
/// nodes resubscribe. Per-room order holds across moves (`RedisClusterOutbox`).
///
/// Topology changes: a `-MOVED` reply (the slot goes to the named node at once, and the map
/// is read again), `-ASK` (`ASKING` and the say to the named node, once), a `sunsubscribe`
/// Redis sends by itself (the slot moved away: read the map, subscribe at the new owner), a
/// lost connection (redial; read the map, since a replica may have been promoted; says not
/// answered go again, first). Reads are rate-limited and jittered (`RedisTopologyRefresher`).
/// While a shard is out, its says wait within `[redis] buffer_messages` / `buffer_ms`.
// @unchecked: every var is touched only on `eventLoop`; `healthBox`, read anywhere, is locked.
public final class RedisClusterFanout: Fanout, RedisLinkOwner, @unchecked Sendable {
    public let eventLoop: any EventLoop
    let logger: Logger
    let metrics = RedisMetrics()
    private let url: RedisURL
    private let channelPrefix: String
    private var bufferMessages: Int
    private var bufferTime: TimeAmount
    private let tls: Result<RedisTLSClient, RedisTLSSetupError>?
    /// `RedisClusterFanout.publishGrace`, shorter only in tests; also how long a slot caught
    /// in a MOVED loop pauses.
    private let publishGrace: TimeAmount
    /// How long a slot whose SSUBSCRIBE is caught in a MOVED loop pauses (plus up to a
    /// quarter of it at random, so the nodes do not retry in step): about a second, shorter
    /// when the grace is (tests).
    private var loopPause: TimeAmount { min(publishGrace, .seconds(1)) }

    /// Cap of every redial backoff; the grace below is longer, so every node is back on a
    /// shard (or has read a moved slot's new owner) before anyone publishes there.
    static let reconnectCap = TimeAmount.seconds(1)
    static let publishGrace = reconnectCap + RedisTopologyRefresher.minimumGap + RedisTopologyRefresher.defaultJitter
        + .milliseconds(200)
    /// MOVED replies one say may follow before it goes back to waiting (a MOVED loop).
    static let maxRedirects = 5
    static let heartbeatInterval = TimeAmount.seconds(1)
    /// A link that answered nothing for this long is closed and dialed again (a closed socket is
    /// seen at once; this is for one that went quiet). 10 s, not 3: on a saturated 2-core machine
    /// a live Redis and a busy node took over 3 s to get a PONG read (the publisher, idle once its
    /// PUBLISHes were answered, hears only PONGs), and the reset resent answered PUBLISHes twice.
    static let silenceLimit = TimeAmount.seconds(10)
    /// The map is read this often even when nothing seems wrong (a shard added and empty yet).
    static let quietRefreshInterval = TimeAmount.seconds(15)

    private var delivery: (any FanoutDelivery)?
    private var localRooms: Set<String> = []
    private var topology: RedisClusterTopology?
    /// Slot owners learned from MOVED since the last read of the map.
    private var slotOverrides: [Int: HostPort] = [:]
    /// Slots whose says wait until the deadline: their owner changed (the grace), or a MOVED
    /// loop paused them.
    private var slotHolds: [Int: NIODeadline] = [:]
    /// MOVED replies each slot's SSUBSCRIBEs followed since one of its channels was last
    /// confirmed: past `maxRedirects` the slot is caught in a MOVED loop (subscriber side).
    private var subscribeRedirects: [Int: Int] = [:]
    /// Slots whose rooms are not SSUBSCRIBEd again before the deadline (a MOVED loop paused
    /// them; following every MOVED at once would ping-pong between the two nodes).
    private var subscribePauses: [Int: NIODeadline] = [:]
    /// Slots whose MOVED loop was logged at warning level; again only once one of their
    /// channels is confirmed (the loop ended) and a new loop starts.
    private var loggedSubscribeLoops: Set<Int> = []
    /// When "redis slot moved" was last logged at info level per slot: at most once per
    /// `movedLogInterval`, the others at debug, so a MOVED storm cannot flood the log.
    private var movedLoggedAt: [Int: NIODeadline] = [:]
    static let movedLogInterval = TimeAmount.seconds(5)
    private var shards: [HostPort: RedisShardLinks] = [:]
    private var outbox = RedisClusterOutbox()
    private var nextSequence: UInt64 = 0
    private var refresher: RedisTopologyRefresher?
    private var refreshBackoff = ReconnectBackoff(base: .milliseconds(200), cap: .seconds(2))
    private var refreshCursor = 0
    private var lastRefreshOK = NIODeadline.uptimeNanoseconds(0)
    private var timer: RepeatedTask?
    private var stopping = false
    /// Why the cluster cannot be used as it should, for /healthz (nil when all is well).
    private var problem: String?
    /// Problems (and TLS failure reasons) logged since the map was last read: each once.
    private var loggedProblems: Set<String> = []
    private let healthBox = NIOLockedValueBox(FanoutHealth(isReady: false, statusLine: "redis cluster: no topology yet",
                                                           details: [("redis", .string("down"))]))
    private let drainWaiters: DrainWaiters
    private var heartbeatPunctuality = HeartbeatPunctuality(interval: RedisClusterFanout.heartbeatInterval)

    /// `url` is a cluster url (`redis+cluster://`): its seeds are where the map is read first.
    public convenience init(url: RedisURL, tls: RedisTLSSettings? = nil, channelPrefix: String, bufferMessages: Int,
                            bufferTime: TimeAmount, eventLoop: any EventLoop, logger: Logger) {
        self.init(url: url, tls: tls, channelPrefix: channelPrefix, bufferMessages: bufferMessages, bufferTime: bufferTime,
                  eventLoop: eventLoop, logger: logger, publishGrace: Self.publishGrace)
    }

    init(url: RedisURL, tls: RedisTLSSettings? = nil, channelPrefix: String, bufferMessages: Int, bufferTime: TimeAmount,
         eventLoop: any EventLoop, logger: Logger, publishGrace: TimeAmount) {
        self.url = url
        self.publishGrace = publishGrace
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

    /// Ready once the map is known and every shard's subscriber is up (a node missing a shard
    /// would not hear that shard's rooms).
    public var health: FanoutHealth { healthBox.withLockedValue { $0 } }

    /// Redis mode does not relay: every request of a session must reach its owner (`ip_hash`).
    public var relay: (any SessionRelay)? { nil }

    public func start(_ context: FanoutStartContext) throws {
        if case .failure(let error) = tls { throw error }
        eventLoop.execute { [self] in
            let refresher = RedisTopologyRefresher(eventLoop: eventLoop) { [self] in refreshTopology() }
            self.refresher = refresher
            refresher.request()
            timer = eventLoop.scheduleRepeatedTask(initialDelay: Self.heartbeatInterval, delay: Self.heartbeatInterval) { [weak self] _ in
                self?.heartbeat()
            }
        }
    }

    public func drain(deadline: NIODeadline) -> EventLoopFuture<Void> {
        eventLoop.flatSubmit { [self] in
            outbox.isEmpty ? eventLoop.makeSucceededFuture(true) : drainWaiters.wait(until: deadline)
        }.map { [self] answered in
            if !answered { logger.warning("redis drain deadline passed with says not yet published") }
        }
    }

    private func settleDrainsIfAnswered() {
        if !drainWaiters.isEmpty && outbox.isEmpty { drainWaiters.settle() }
    }

    public func stop() -> EventLoopFuture<Void> {
        eventLoop.submit { [self] in
            stopping = true
            refresher?.stop()
            timer?.cancel()
            flushAll()
            for links in shards.values {
                for link in [links.subscriber, links.publisher] { link?.channel?.close(promise: nil) }
            }
        }
    }

    /// Takes new `[redis] buffer_messages` / `buffer_ms` (a reload); see `RedisFanout.applyBuffer`.
    public func applyBuffer(messages: Int, time: TimeAmount) -> EventLoopFuture<String> {
        eventLoop.submit { [self] in
            let old = "\(bufferMessages) messages, \(bufferTime.nanoseconds / 1_000_000) ms"
            bufferMessages = max(1, messages)
            bufferTime = time
            var dropped = 0
            while outbox.queuedCount > bufferMessages, outbox.dropOldest() { dropped += 1 }
            if dropped > 0 {
                metrics.dropped.increment(by: Int64(dropped))
                settleDrainsIfAnswered()
            }
            metrics.buffered.record(outbox.queuedCount)
            let new = "\(bufferMessages) messages, \(bufferTime.nanoseconds / 1_000_000) ms"
            return "redis buffer: \(old) -> \(new)" + (dropped > 0 ? " (\(dropped) buffered says dropped)" : "")
        }
    }

    // MARK: Slots

    private func slot(ofChannel channel: String) -> Int { RedisHashSlot.of(channel) }

    /// The primary serving `slot` as this node knows it (a MOVED overrides the last map read).
    private func owner(_ slot: Int) -> HostPort? {
        slotOverrides[slot] ?? topology?.shard(forSlot: slot)?.primary
    }

    private func ownerLinks(_ slot: Int) -> RedisShardLinks? {
        owner(slot).flatMap { shards[$0] }
    }

    /// Says of `slots` wait `publishGrace`: their owner changed, and the other nodes' members
    /// of their rooms must be subscribed at the new one first.
    private func hold(_ slots: some Sequence<Int>, for pause: TimeAmount) {
        let until = eventLoop.now + pause
        var any = false
        for slot in slots {
            slotHolds[slot] = max(slotHolds[slot] ?? until, until)
            any = true
        }
        if any { eventLoop.assumeIsolated().scheduleTask(in: pause) { [self] in flushAll() } }
    }

    // MARK: Topology

    /// Seeds first, then every node the last map named; each read starts one further along,
    /// so a dead first seed is not asked first every time.
    private func refreshCandidates() -> [HostPort] {
        var seen = Set<HostPort>()
        var candidates: [HostPort] = []
        for address in url.seeds + (topology?.nodes ?? []) where seen.insert(address).inserted { candidates.append(address) }
        guard !candidates.isEmpty else { return [] }
        let start = refreshCursor % candidates.count
        refreshCursor += 1
        return Array(candidates[start...] + candidates[..<start])
    }

    private func refreshTopology() -> EventLoopFuture<Void> {
        read(from: refreshCandidates()[...], failures: [])
    }

    /// Asks each candidate in turn until one gives a usable map.
    private func read(from candidates: ArraySlice<HostPort>, failures: [String]) -> EventLoopFuture<Void> {
        guard !stopping else { return eventLoop.makeSucceededVoidFuture() }
        guard let address = candidates.first else {
            report("no Redis Cluster node gave a usable topology (\(failures.joined(separator: "; ")))", detail: "retrying",
                   key: "no-topology")
            let delay = refreshBackoff.nextDelay()
            eventLoop.assumeIsolated().scheduleTask(in: delay) { [self] in refresher?.request() }
            return eventLoop.makeSucceededVoidFuture()
        }
        let tlsClient = try? tls?.get()
        return RedisTopologyReader.read(from: address, url: url, tls: tlsClient, eventLoop: eventLoop, logger: logger)
            .assumeIsolated().flatMap { [self] outcome in
                let failure: String
                switch outcome {
                case .reply(.error(let text)) where RedisClusterErrorKind.classify(text) == .clusterSupportDisabled:
                    metrics.topologyRefresh("not_cluster")
                    failure = "\(address): not in cluster mode"
                    report("redis seed \(address) is not in cluster mode (cluster support disabled): a redis+cluster:// url needs "
                        + "Redis Cluster nodes (cluster-enabled yes); for a single server use redis:// (mode = classic)",
                        detail: clipped(text), key: "not-cluster \(address)")
                case .reply(let value):
                    switch RedisClusterTopology.parse(clusterSlots: value, askedHost: address.host) {
                    case .success(let new):
                        metrics.topologyRefresh("ok")
                        apply(new, readFrom: address)
                        return eventLoop.makeSucceededVoidFuture()
                    case .failure(let error):
                        metrics.topologyRefresh("error")
                        failure = "\(address): \(error)"
                        report("redis cluster topology from \(address) rejected", detail: error.description, key: "bad-topology \(address)")
                    }
                case .unreachable(let why):
                    metrics.topologyRefresh("unreachable")
                    failure = "\(address): \(why)"
                    logger.debug("redis cluster node did not answer CLUSTER SLOTS", metadata: ["address": "\(address)", "error": "\(why)"])
                case .tls(let tlsFailure):
                    metrics.topologyRefresh("unreachable")
                    metrics.tlsFailure(reason: tlsFailure.reason)
                    failure = "\(address): \(tlsFailure.message)"
                    report("redis TLS handshake failed: \(tlsFailure.message)", detail: "\(address)", key: "tls \(tlsFailure.reason)")
                }
                return read(from: candidates.dropFirst(), failures: failures + [failure])
            }.nonisolated()
    }

    /// Logs a problem once (until the map is read again) and shows it in /healthz.
    private func report(_ message: String, detail: String, key: String) {
        problem = message
        if loggedProblems.insert(key).inserted {
            logger.error("\(message)", metadata: ["detail": "\(detail)"])
        } else {
            logger.debug("\(message)", metadata: ["detail": "\(detail)"])
        }
        publishHealth()
    }

    private func apply(_ new: RedisClusterTopology, readFrom address: HostPort) {
        refreshBackoff.reset()
        lastRefreshOK = eventLoop.now
        if problem != nil || !loggedProblems.isEmpty {
            problem = nil
            loggedProblems.removeAll()
        }
        let changed = topology != new || !slotOverrides.isEmpty
        if changed {
            // Slots that change owner wait the grace (not at the first read: nobody published yet).
            if topology != nil {
                var moved: [Int] = []
                for slot in 0..<RedisHashSlot.count {
                    if let before = owner(slot), before != new.shard(forSlot: slot)?.primary { moved.append(slot) }
                }
                hold(moved, for: publishGrace)
            }
            logger.info("redis cluster topology", metadata: [
                "from": "\(address)", "shards": "\(new.shards.map(Self.describe).joined(separator: "; "))",
                "covers_every_slot": "\(new.coversEverySlot)",
            ])
            if !new.coversEverySlot {
                logger.warning("redis cluster topology leaves slots without a shard: says for their rooms wait")
            }
        }
        topology = new
        slotOverrides.removeAll()
        // A dead primary stays in the map until its replica is promoted (cluster-node-timeout
        // and an election): reads that find the same map back off meanwhile.
        let allUp = new.shards.allSatisfy { shards[$0.primary]?.subscriberUp == true }
        if changed || allUp { refresher?.speedUp() } else { refresher?.slowDown() }
        let primaries = Set(new.shards.map(\.primary))
        for primary in primaries { ensureLinks(primary, ownsSlots: true) }
        for (address, links) in shards where !primaries.contains(address) && !links.retired {
            retire(links)
        }
        outbox.reroute(owner: owner)
        reconcileSubscriptions()
        flushAll()
        publishHealth()
    }

    static func describe(_ shard: RedisShard) -> String {
        let slots = shard.slots.map { $0.lowerBound == $0.upperBound ? "\($0.lowerBound)" : "\($0.lowerBound)-\($0.upperBound)" }
        let replicas = shard.replicas.isEmpty ? "" : " replicas \(shard.replicas.map(\.description).joined(separator: ","))"
        return "\(slots.joined(separator: ",")) at \(shard.primary)\(replicas)"
    }

    /// A node that left the map: its links close (what they had in flight goes to the new
    /// owners), and it is forgotten.
    private func retire(_ links: RedisShardLinks) {
        links.retired = true
        links.ownsSlots = false
        outbox.forgetAsks(to: links.address, owner: owner)
        for link in [links.subscriber, links.publisher] { link?.channel?.close(promise: nil) }
        metrics.shardUp(links.address.description, false)
        metrics.shardRooms(links.address.description, 0)
        forgetIfIdle(links)
    }

    private func forgetIfIdle(_ links: RedisShardLinks) {
        if links.retired, links.subscriber == nil, links.publisher == nil, shards[links.address] === links {
            shards[links.address] = nil
        }
    }

    /// Subscribes each local room at its slot's owner, and nowhere else.
    private func reconcileSubscriptions() {
        for room in localRooms {
            let channel = channelPrefix + room
            let owner = owner(slot(ofChannel: channel))
            for (address, links) in shards where address != owner && links.subscribed.contains(channel) {
                unsubscribe(channel, on: links)
            }
            if let owner, let links = shards[owner], links.subscriberUp, !links.subscribed.contains(channel),
               maySubscribe(slot: slot(ofChannel: channel)) {
                subscribe(channel, on: links)
            }
        }
        for links in shards.values { links.subscriber?.flush() }
    }

    private func subscribe(_ channel: String, on links: RedisShardLinks, flush: Bool = false) {
        links.subscribed.insert(channel)
        links.confirmed.remove(channel)
        // One channel per SSUBSCRIBE: channels of different slots may not share one.
        links.subscriber?.send(["SSUBSCRIBE", .string(channel)], flush: flush)
    }

    private func unsubscribe(_ channel: String, on links: RedisShardLinks) {
        links.subscribed.remove(channel)
        links.confirmed.remove(channel)
        guard links.subscriberUp else { return }
        links.unsubscribesOwed[channel, default: 0] += 1
        links.subscriber?.send(["SUNSUBSCRIBE", .string(channel)])
    }

    // MARK: Connections

    private func ensureLinks(_ address: HostPort, ownsSlots: Bool) {
        let links: RedisShardLinks
        if let known = shards[address] {
            links = known
            links.retired = false
            if ownsSlots { links.ownsSlots = true }
        } else {
            links = RedisShardLinks(address: address, ownsSlots: ownsSlots)
            shards[address] = links
        }
        connect(links, .publisher)
        if links.ownsSlots { connect(links, .subscriber) }
    }

    private func connect(_ links: RedisShardLinks, _ role: RedisLink.Role) {
        guard !stopping, !links.retired, links.link(role) == nil, shards[links.address] === links else { return }
        let tlsClient = try? tls?.get()
        let link = RedisLink(role: role, owner: self, setup: RedisDialer.setupCommands(for: url), overTLS: tlsClient != nil,
                             address: links.address)
        links.setLink(role, link)
        RedisDialer.dial(links.address, tls: tlsClient, link: NIOLoopBound(link, eventLoop: eventLoop), on: eventLoop)
            .assumeIsolated().whenFailure { [self] error in
                guard links.link(role) === link else { return }
                links.setLink(role, nil)
                if !links.loggedUnreachable {
                    links.loggedUnreachable = true
                    logger.warning("redis cluster node unreachable", metadata: [
                        "role": "\(role.rawValue)", "address": "\(links.address)", "error": "\(error)",
                    ])
                }
                // A dead primary: its replica takes over after cluster-node-timeout.
                refresher?.request()
                scheduleReconnect(links, role)
                forgetIfIdle(links)
            }
    }

    private func scheduleReconnect(_ links: RedisShardLinks, _ role: RedisLink.Role) {
        guard !stopping, !links.retired else { return }
        eventLoop.assumeIsolated().scheduleTask(in: links.backoff[role].nextDelay()) { [self] in
            if role == .subscriber && !links.ownsSlots { return }
            connect(links, role)
        }
    }

    private func links(of link: RedisLink) -> RedisShardLinks? {
        guard let address = link.address, let links = shards[address], links.link(link.role) === link else { return nil }
        return links
    }

    func linkReady(_ link: RedisLink) {
        guard let links = links(of: link), !links.retired else {
            link.channel?.close(promise: nil)
            return
        }
        loggedProblems = loggedProblems.filter { !$0.hasPrefix("tls ") }
        links.backoff[link.role].reset()
        links.lastHeard[link.role] = eventLoop.now
        links.loggedUnreachable = false
        switch link.role {
        case .subscriber:
            links.subscribed.removeAll()
            links.confirmed.removeAll()
            links.unsubscribesOwed.removeAll()
            var rooms = 0
            for room in localRooms {
                let channel = channelPrefix + room
                if owner(slot(ofChannel: channel)) == links.address, maySubscribe(slot: slot(ofChannel: channel)) {
                    subscribe(channel, on: links)
                    rooms += 1
                }
            }
            link.flush()
            links.graceUntil = eventLoop.now + publishGrace
            eventLoop.assumeIsolated().scheduleTask(in: publishGrace) { [self] in flushAll() }
            logger.info("redis shard subscriber ready", metadata: ["shard": "\(links.address)", "rooms": "\(rooms)"])
        case .publisher:
            logger.info("redis shard publisher ready", metadata: ["shard": "\(links.address)", "buffered": "\(outbox.queuedCount)"])
            flush(links)
        case .query:
            break
        }
        publishHealth()
    }

    func linkClosed(_ link: RedisLink) {
        guard let links = links(of: link) else { return }
        switch link.role {
        case .subscriber:
            let resend = links.echoesLost(channel: nil)
            if !stopping && !resend.isEmpty {
                logger.info("redis shard subscriber lost before the echo of acknowledged says: they are sent again",
                            metadata: ["shard": "\(links.address)", "says": "\(resend.count)"])
                outbox.requeue(resend, owner: owner)
            }
            links.subscriberLost()
        case .publisher:
            // SPUBLISHes without a reply may not have reached Redis: they go again, first.
            for publish in links.publisherLost() { outbox.refused(publish, owner: owner) }
            settleDrainsIfAnswered()
        case .query:
            break
        }
        forgetIfIdle(links)
        guard !stopping, !links.retired else { return publishHealth() }
        metrics.reconnects.increment()
        metrics.shardReconnect(links.address.description)
        if link.tlsFailure == nil {
            logger.warning("redis shard connection lost", metadata: ["role": "\(link.role.rawValue)", "shard": "\(links.address)"])
        }
        refresher?.request()
        scheduleReconnect(links, link.role)
        flushAll()
        publishHealth()
    }

    func heard(from link: RedisLink) {
        links(of: link)?.lastHeard[link.role] = eventLoop.now
    }

    func linkReset(_ link: RedisLink, reason: String) {
        metrics.errors.increment()
    }

    func tlsFailure(for error: any Error, on link: RedisLink, duringHandshake: Bool) -> RedisTLSFailure? {
        RedisTLSFailure.classify(error, host: link.address?.host ?? url.host, duringHandshake: duringHandshake,
                                 presentsClientCertificate: (try? tls?.get())?.presentsClientCertificate ?? false)
    }

    func tlsFailed(_ failure: RedisTLSFailure, on link: RedisLink, detail: String?) {
        metrics.errors.increment()
        metrics.tlsFailure(reason: failure.reason)
        report("redis TLS handshake failed: \(failure.message)", detail: "\(link.addressText) \(detail ?? "")",
               key: "tls \(failure.reason)")
    }

    // MARK: Replies

    func received(_ value: RESPValue, on link: RedisLink) {
        guard let links = links(of: link) else { return }
        switch link.role {
        case .publisher: publisherReceived(value, on: links, link: link)
        case .subscriber: subscriberReceived(value, on: links)
        case .query: break
        }
    }

    private func publisherReceived(_ value: RESPValue, on links: RedisShardLinks, link: RedisLink) {
        guard let owed = links.awaitingReply.popFirst() else {
            return link.fail("unexpected reply \(RedisLink.describe(value))")
        }
        switch owed {
        case .ping, .asking:
            if case .error(let text) = value {
                metrics.errors.increment()
                logger.warning("redis refused a command", metadata: ["shard": "\(links.address)", "error": "\(clipped(text))"])
            }
        case .publish(var publish):
            guard case .error(let text) = value else {
                outbox.answered(publish, owner: owner)
                if let again = links.acknowledged(publish) {
                    // Its echo can no longer come (the subscriber went first): sent again.
                    outbox.requeue([again], owner: owner)
                }
                metrics.published.increment()
                links.retryBackoff.reset()
                links.loggedRetry = false
                if problem?.hasPrefix("redis cluster answered") == true { problem = nil }
                break
            }
            links.forgetEcho(publish)
            let kind = RedisClusterErrorKind.classify(text)
            switch kind {
            case .moved, .ask:
                guard let redirect = RedisRedirect.parse(text, connectionHost: links.address.host) else {
                    fallthrough
                }
                if redirect.kind == .ask {
                    metrics.asks.increment()
                    publish.askTarget = redirect.address
                    ensureLinks(redirect.address, ownsSlots: false)
                    outbox.refused(publish, owner: owner)
                    break
                }
                publish.redirects += 1
                if publish.redirects > Self.maxRedirects {
                    metrics.redirectLoops.increment()
                    logger.warning("redis MOVED loop: the say waits and the topology is read again", metadata: [
                        "slot": "\(publish.slot)", "shard": "\(links.address)", "moved_to": "\(redirect.address)",
                        "redirects": "\(publish.redirects - 1)",
                    ])
                    publish.redirects = 0
                    hold([publish.slot], for: publishGrace)
                }
                moved(slot: publish.slot, to: redirect.address, from: links)
                outbox.refused(publish, owner: owner)
            case .clusterDown, .tryAgain:
                metrics.clusterRetry(kind == .clusterDown ? "clusterdown" : "tryagain")
                if !links.loggedRetry {
                    links.loggedRetry = true
                    logger.warning("redis cluster answered \(kind == .clusterDown ? "CLUSTERDOWN" : "TRYAGAIN"): retrying with backoff",
                                   metadata: ["shard": "\(links.address)", "error": "\(clipped(text))"])
                }
                problem = "redis cluster answered \(clipped(text))"
                let delay = links.retryBackoff.nextDelay()
                links.retryNotBefore = eventLoop.now + delay
                eventLoop.assumeIsolated().scheduleTask(in: delay) { [self] in flushAll() }
                outbox.refused(publish, owner: owner)
                refresher?.request()
            case .clusterSupportDisabled, .other:
                metrics.errors.increment()
                logger.error("redis refused a SPUBLISH", metadata: ["shard": "\(links.address)", "error": "\(clipped(text))"])
                outbox.answered(publish, owner: owner)
            }
            flushAll()
        }
        settleDrainsIfAnswered()
    }

    /// `slot` lives at `address` now (a MOVED): its says go there, its rooms subscribe there,
    /// after the grace; and the whole map is read again.
    private func moved(slot: Int, to address: HostPort, from links: RedisShardLinks) {
        metrics.moved(links.address.description)
        if owner(slot) != address {
            let now = eventLoop.now
            let metadata: Logger.Metadata = ["slot": "\(slot)", "from": "\(links.address)", "to": "\(address)"]
            if let last = movedLoggedAt[slot], now - last < Self.movedLogInterval {
                logger.debug("redis slot moved", metadata: metadata)
            } else {
                movedLoggedAt[slot] = now
                logger.info("redis slot moved", metadata: metadata)
            }
            slotOverrides[slot] = address
            hold([slot], for: publishGrace)
            ensureLinks(address, ownsSlots: true)
            outbox.reroute(owner: owner)
            reconcileSubscriptions()
        }
        refresher?.request()
    }

    /// A MOVED answering an SSUBSCRIBE: followed at once, like a publish's, up to
    /// `maxRedirects` per slot; past that the slot is in a MOVED loop (two nodes that disagree
    /// about it, each naming the other): its rooms are not subscribed again for a jittered
    /// pause, the map is read meanwhile (rate-limited), and the loop is counted and logged
    /// once. Its says wait in the outbox (they need the SSUBSCRIBE confirmed), within the
    /// buffer bounds.
    private func subscribeMoved(_ redirect: RedisRedirect, from links: RedisShardLinks) {
        let slot = redirect.slot
        // The refused channels are not subscribed here (the reply names the slot only).
        for channel in links.subscribed where !links.confirmed.contains(channel) && self.slot(ofChannel: channel) == slot {
            links.subscribed.remove(channel)
        }
        let redirects = (subscribeRedirects[slot] ?? 0) + 1
        guard redirects > Self.maxRedirects else {
            subscribeRedirects[slot] = redirects
            return moved(slot: slot, to: redirect.address, from: links)
        }
        subscribeRedirects[slot] = 0
        metrics.moved(links.address.description)
        metrics.redirectLoops.increment()
        let pauseMs = Int64(loopPause.nanoseconds / 1_000_000)
        let pause = TimeAmount.milliseconds(pauseMs + Int64.random(in: 0...max(1, pauseMs / 4)))
        let metadata: Logger.Metadata = [
            "slot": "\(slot)", "shard": "\(links.address)", "moved_to": "\(redirect.address)",
            "redirects": "\(redirects - 1)", "pause_ms": "\(pause.nanoseconds / 1_000_000)",
        ]
        if loggedSubscribeLoops.insert(slot).inserted {
            logger.warning("redis MOVED loop on SSUBSCRIBE: the slot's rooms pause, their says wait and the topology is read again",
                           metadata: metadata)
        } else {
            logger.debug("redis MOVED loop on SSUBSCRIBE again", metadata: metadata)
        }
        subscribePauses[slot] = eventLoop.now + pause
        hold([slot], for: pause)
        refresher?.request()
        eventLoop.assumeIsolated().scheduleTask(in: pause) { [self] in
            reconcileSubscriptions()
            flushAll()
        }
    }

    /// The echoes `links` awaited for `channel` cannot come any more: the acknowledged says go
    /// again (ahead of the room's later ones) while the room has local members; else they are
    /// done, as a say to a room without local members is at its reply.
    private func echoesLost(channel: String, on links: RedisShardLinks) {
        guard localRooms.contains(String(channel.dropFirst(channelPrefix.count))), !stopping else {
            return links.releaseEchoes(channel: channel)
        }
        let resend = links.echoesLost(channel: channel)
        guard !resend.isEmpty else { return }
        logger.info("redis room unsubscribed before the echo of acknowledged says: they are sent again",
                    metadata: ["shard": "\(links.address)", "says": "\(resend.count)"])
        outbox.requeue(resend, owner: owner)
        flushAll()
    }

    /// Whether rooms of `slot` may be SSUBSCRIBEd now (not paused by a MOVED loop).
    private func maySubscribe(slot: Int) -> Bool {
        guard let until = subscribePauses[slot] else { return true }
        return until <= eventLoop.now
    }

    private func subscriberReceived(_ value: RESPValue, on links: RedisShardLinks) {
        guard case .array(let parts?) = value, let kind = parts.first?.string else {
            if case .error(let text) = value {
                if let redirect = RedisRedirect.parse(text, connectionHost: links.address.host), redirect.kind == .moved {
                    // An SSUBSCRIBE reached a node that no longer owns the slot.
                    subscribeMoved(redirect, from: links)
                } else {
                    metrics.errors.increment()
                    logger.error("redis subscriber error", metadata: ["shard": "\(links.address)", "error": "\(clipped(text))"])
                }
            }
            return
        }
        switch kind {
        case "smessage" where parts.count == 3:
            if let channel = parts[1].string, let payload = parts[2].bytes {
                links.heardEcho(channel: channel, payload: payload)
                deliver(channel: channel, payload: payload)
            }
        case "ssubscribe" where parts.count == 3:
            if let channel = parts[1].string, links.subscribed.contains(channel) {
                links.confirmed.insert(channel)
                let slot = slot(ofChannel: channel)
                subscribeRedirects[slot] = nil
                loggedSubscribeLoops.remove(slot)
                flushAll()
            }
        case "sunsubscribe" where parts.count == 3:
            guard let channel = parts[1].string else { return }
            // Echoes of this channel come before this push: those still awaited never will.
            echoesLost(channel: channel, on: links)
            if let owed = links.unsubscribesOwed[channel], owed > 0 {
                links.unsubscribesOwed[channel] = owed > 1 ? owed - 1 : nil
                return
            }
            // Not ours: Redis dropped the channel because its slot left this shard.
            links.subscribed.remove(channel)
            links.confirmed.remove(channel)
            metrics.slotMovedAway(links.address.description)
            logger.info("redis shard unsubscribed a room: its slot moved; reading the topology",
                        metadata: ["shard": "\(links.address)", "channel": "\(channel.prefix(128))"])
            refresher?.request()
            publishHealth()
        default:
            break // pongs
        }
    }

    private func deliver(channel: String, payload: ByteBuffer) {
        guard let broadcast = RedisChatPayload.broadcast(channel: channel, payload: payload, channelPrefix: channelPrefix,
                                                         metrics: metrics, logger: logger) else { return }
        delivery?.deliverLocally(broadcast)
    }

    // MARK: Publishing

    private func flushAll() {
        for links in shards.values { flush(links) }
    }

    /// Sends what waits for this node, in order, as far as it may: see `RedisClusterOutbox`
    /// for order, `RedisShardLinks.mayPublish` for the grace; a room with local members also
    /// needs its SSUBSCRIBE confirmed at the slot's owner (its members hear the echo).
    private func flush(_ links: RedisShardLinks) {
        let now = eventLoop.now
        guard !stopping || links.publisherUp, links.mayPublish(at: now), let publisher = links.publisher else { return }
        var wrote = false
        while let next = outbox.head(of: links.address) {
            guard outbox.canSend(slot: next.slot, to: links.address) else { break }
            if let hold = slotHolds[next.slot], hold > now { break }
            if localRooms.contains(next.room) {
                guard let owner = ownerLinks(next.slot), owner.confirmed.contains(next.channel) else { break }
            }
            guard let publish = outbox.takeHead(of: links.address) else { break }
            if publish.askTarget != nil {
                publisher.send(["ASKING"], flush: false)
                links.awaitingReply.append(.asking)
            }
            publisher.send(["SPUBLISH", .string(publish.channel), .string(publish.payload)], flush: false)
            links.awaitingReply.append(.publish(publish))
            // This node is subscribed here to its room: the say counts as delivered once its
            // echo comes back, not at the reply (see `RedisShardLinks.awaitingEcho`).
            if publish.askTarget == nil, localRooms.contains(publish.room), ownerLinks(publish.slot) === links {
                links.expectEcho(publish, limit: bufferMessages)
            }
            wrote = true
        }
        if wrote {
            publisher.flush()
            metrics.buffered.record(outbox.queuedCount)
        }
    }

    /// PINGs every connection (one silent past the limit is closed and redialled), ages out
    /// says that waited past `buffer_ms`, and reads the map while a shard is out.
    private func heartbeat() {
        let now = eventLoop.now
        let onTime = heartbeatPunctuality.beat(at: NIODeadline.now())
        for links in shards.values {
            for link in [links.subscriber, links.publisher].compactMap({ $0 }) where link.isReady {
                if onTime, let heard = links.lastHeard[link.role], now - heard > Self.silenceLimit {
                    link.fail("no reply for \(Self.silenceLimit.nanoseconds / 1_000_000_000) s")
                    continue
                }
                link.send(["PING"])
                if link.role == .publisher { links.awaitingReply.append(.ping) }
            }
        }
        for links in shards.values { links.releaseEchoes(enqueuedBefore: (now - bufferTime).uptimeNanoseconds) }
        let dropped = outbox.dropWaiting(enqueuedBefore: (now - bufferTime).uptimeNanoseconds)
        if dropped > 0 {
            metrics.dropped.increment(by: Int64(dropped))
            logger.warning("redis shard outage outlasted the buffer: says dropped", metadata: ["dropped": "\(dropped)"])
            settleDrainsIfAnswered()
        }
        slotHolds = slotHolds.filter { $0.value > now }
        subscribePauses = subscribePauses.filter { $0.value > now }
        movedLoggedAt = movedLoggedAt.filter { now - $0.value < Self.movedLogInterval }
        let allUp = topology.map { $0.shards.allSatisfy { shards[$0.primary]?.subscriberUp == true } } ?? false
        if !allUp || now - lastRefreshOK > Self.quietRefreshInterval { refresher?.request() }
        metrics.buffered.record(outbox.queuedCount)
        publishHealth()
    }

    // MARK: Health

    private func publishHealth() {
        let shardList = topology?.shards ?? []
        var entries: [JSONValue] = []
        var up = 0
        for shard in shardList {
            let links = shards[shard.primary]
            let isUp = links?.subscriberUp == true
            if isUp { up += 1 }
            let rooms = links?.subscribed.count ?? 0
            let slots = shard.slots.map { $0.lowerBound == $0.upperBound ? "\($0.lowerBound)" : "\($0.lowerBound)-\($0.upperBound)" }
            entries.append(.object([
                ("slots", .string(slots.joined(separator: ","))), ("primary", .string(shard.primary.description)),
                ("up", .bool(isUp)), ("rooms", .number(Double(rooms))),
            ]))
            metrics.shardUp(shard.primary.description, isUp)
            metrics.shardRooms(shard.primary.description, rooms)
        }
        let ready = !shardList.isEmpty && up == shardList.count
        metrics.up.record(ready ? 1 : 0)
        metrics.shards.record(shardList.count)
        metrics.shardsUp.record(up)
        var details: [(String, JSONValue)] = [
            ("redis", .string(ready ? "up" : "down")), ("redis_mode", .string("sharded")), ("redis_shards", .array(entries)),
        ]
        if let problem { details.append(("redis_error", .string(problem))) }
        let status = topology == nil ? "redis cluster: no topology yet" : "redis cluster: \(up)/\(shardList.count) shards up"
        healthBox.withLockedValue { $0 = FanoutHealth(isReady: ready, statusLine: status, details: details) }
    }

    // MARK: Fanout

    public func start(delivery: any FanoutDelivery) {
        self.delivery = delivery
    }

    public func subscribe(room: String) {
        onLoop { [self] in
            guard localRooms.insert(room).inserted else { return }
            let channel = channelPrefix + room
            guard let links = ownerLinks(slot(ofChannel: channel)), links.subscriberUp,
                  maySubscribe(slot: slot(ofChannel: channel)) else { return }
            subscribe(channel, on: links, flush: true)
        }
    }

    public func unsubscribe(room: String) {
        onLoop { [self] in
            guard localRooms.remove(room) != nil else { return }
            let channel = channelPrefix + room
            for links in shards.values {
                links.releaseEchoes(channel: channel)
                if links.subscribed.contains(channel) { unsubscribe(channel, on: links) }
            }
        }
    }

    public func publish(_ message: ChatMessage) {
        onLoop { [self] in
            let channel = channelPrefix + message.room
            let publish = RedisClusterPublish(sequence: nextSequence, room: message.room, channel: channel, payload: message.eventJSON,
                                              slot: slot(ofChannel: channel), enqueuedAt: eventLoop.now.uptimeNanoseconds)
            nextSequence += 1
            outbox.enqueue(publish, owner: owner)
            var dropped = 0
            while outbox.queuedCount > bufferMessages, outbox.dropOldest() { dropped += 1 }
            if dropped > 0 { metrics.dropped.increment(by: Int64(dropped)) }
            if let links = ownerLinks(publish.slot) { flush(links) }
        }
    }

    /// Always queued, never run inline (see `RedisFanout.onLoop`: calls from every loop keep
    /// the order the hub counted them in).
    private func onLoop(_ work: @escaping @Sendable () -> Void) {
        eventLoop.execute(work)
    }
}
