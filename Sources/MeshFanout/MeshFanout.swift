import ChatCore
import ClusterConfig
import Logging
import Metrics
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL

/// The broker-free fanout: one authenticated TCP link to every other node of cluster.conf.
///
/// Nodes tell each other which rooms have local members (SNAPSHOT on link up, then SUB /
/// UNSUB), and a published message goes only to nodes with members in its room, once (no
/// forwarding beyond one hop). Each PUB is numbered per peer and kept until the peer
/// acknowledges it, so a link that drops loses nothing within the buffer bound: after
/// reconnect the peer says what it has and the rest is sent again, in order.
///
/// With connection-state recovery on (the hub has a `RecoveryStore`, docs/RECOVERY.md) every
/// PUB goes to every peer as PUB_STAMPED, numbered by its origin, and session records are
/// replicated to every peer (`SessionReplication`, in MeshSessionReplication.swift).
///
/// All mesh state lives on one event loop (`eventLoop`), which also runs every mesh
/// connection, so none of it takes a lock.
// @unchecked: every var, and drainWaiters, is touched only on `eventLoop` (serverChannel: set in start, read in stop;
// delivery and recovery: set in start(delivery:), before anything is published; settings: read by start before the
// loop runs any reload).
public final class MeshFanout: Fanout, @unchecked Sendable {
    public let localName: String
    public let eventLoop: any EventLoop
    let logger: Logger
    let metrics = MeshMetrics()
    /// The backend of each peer's counters (`PeerMetrics`), kept for peers a reload adds.
    let metricsFactory: any MetricsFactory
    /// `[mesh]` as last applied (`apply`, MeshReload.swift): timers, buffers and the frame cap
    /// are read from here per link event. `tls` stays as it was at start.
    var settings: MeshSettings
    private let secret: String
    private let listenAddress: HostPort
    /// The peers of cluster.conf as last applied: each new link's handshake gets this set.
    var knownPeers: Set<String>
    /// Changes every start, so peers can tell a restarted node from a reconnecting one. With
    /// recovery on it is also this process's message origin (`MessageOrigin.originID`).
    public let epoch: UInt64

    var peers: [String: PeerState] = [:]
    private var localRooms: Set<String> = []
    var delivery: (any FanoutDelivery)?
    /// The hub's recovery store, when recovery is on (read once, in start(delivery:)).
    var recovery: RecoveryStore?
    private var serverChannel: (any Channel)?
    private var heartbeatTimer: RepeatedTask?
    /// A late heartbeat (the loop was busy) does not judge silence: see `HeartbeatPunctuality`.
    var heartbeatPunctuality: HeartbeatPunctuality
    private var pendingFlush: [PeerLinkHandler] = []
    /// Links still in their handshake, oldest first: this node's dials and accepted connections
    /// (`dialedPeer == nil`); only the accepted ones count against `maxUnauthenticatedLinks`.
    var pendingHandshakes: [PeerLinkHandler] = []
    /// `start` has run: peers added by a reload are dialed at once (before it, `start` dials them).
    var started = false
    /// `[mesh] tls = on`: the contexts every link is wrapped in, loaded once per start.
    private var tlsContexts: MeshTLSContexts?
    var stopping = false
    /// Drains waiting for every live peer to acknowledge what it was sent.
    private let drainWaiters: DrainWaiters
    /// Which peers are up, readable from any thread (health checks) without a loop hop.
    private let linkStatus = NIOLockedValueBox<[String: Bool]>([:])
    /// The origin id of each peer with a live link, by name: what `SessionReplication` tells
    /// the recovery store, on the store's loop, which need not be this one.
    let liveLinks = NIOLockedValueBox<[String: UInt32]>([:])
    /// The session relay (MeshRelay.swift): every peer's tag (`NodeTag`), which the sids it
    /// makes start with, and this node's own.
    /// Read from any thread (a client's request names a sid); a reload replaces it.
    let peerTags: NIOLockedValueBox<[String: String]>
    let localTag: String
    let relayMetrics: RelayMetrics
    /// Where requests relayed to this node go: set once before start, read per relayed request.
    let relayOwner = NIOLockedValueBox<(any RelayOwnerHandler)?>(nil)

    static let maxUnauthenticatedLinks = 64
    /// A receiver acknowledges every `ackEvery` PUBs or `ackDelay` after the first unacknowledged
    /// one. The ACK only lets the sender drop what it keeps for a redial, so it can be lazy, and
    /// a lazy ACK costs a busy link less (docs/PERFORMANCE.md).
    static let ackEvery = 64
    static let ackDelay = TimeAmount.milliseconds(100)

    /// `epoch`: this process's epoch (the node makes one and gives it to the recovery store
    /// too); nil or 0 picks a random one.
    public convenience init(config: ClusterConfig, localNode: NodeEntry, eventLoop: any EventLoop, logger: Logger, epoch: UInt64? = nil) {
        self.init(config: config, localNode: localNode, eventLoop: eventLoop, logger: logger, epoch: epoch, relayMetrics: RelayMetrics())
    }

    /// `relayMetrics`: tests give theirs, made with a factory they read.
    /// `metricsFactory`: where the per-peer counters go (tests give theirs).
    init(config: ClusterConfig, localNode: NodeEntry, eventLoop: any EventLoop, logger: Logger, epoch: UInt64?, relayMetrics: RelayMetrics,
         metricsFactory: any MetricsFactory = MetricsSystem.factory) {
        self.relayMetrics = relayMetrics
        self.metricsFactory = metricsFactory
        self.localName = localNode.name
        self.eventLoop = eventLoop
        self.logger = logger
        self.settings = config.mesh
        self.heartbeatPunctuality = HeartbeatPunctuality(interval: config.mesh.pingInterval)
        self.drainWaiters = DrainWaiters(eventLoop: eventLoop)
        self.secret = config.secret ?? ""
        self.listenAddress = localNode.mesh ?? HostPort(host: "127.0.0.1", port: 0)
        if let epoch, epoch != 0 {
            self.epoch = epoch
        } else {
            var generator = SystemRandomNumberGenerator()
            self.epoch = UInt64.random(in: 1...UInt64.max, using: &generator)
        }
        var names = Set<String>()
        for node in config.nodes where node.name != localNode.name {
            guard let mesh = node.mesh else { continue }
            names.insert(node.name)
            peers[node.name] = PeerState(
                name: node.name, address: mesh, weDial: localNode.name < node.name,
                bufferMessages: settings.bufferMessages, reconnectMax: settings.reconnectMax,
                metricsFactory: metricsFactory
            )
        }
        self.knownPeers = names
        self.localTag = NodeTag.of(nodeName: localNode.name)
        self.peerTags = NIOLockedValueBox(Self.tags(of: names))
        linkStatus.withLockedValue { status in for name in names { status[name] = false } }
    }

    // MARK: Lifecycle

    /// Binds the mesh listener (or adopts the one systemd passed) and starts dialing the peers
    /// this node dials.
    public func start(_ context: FanoutStartContext) throws {
        if let tls = settings.tls {
            tlsContexts = try MeshTLSContexts(settings: tls, node: localName)
        }
        let bootstrap = ServerBootstrap(group: eventLoop)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            // Out of descriptors, NIO would retry the failed accept on every loop iteration.
            .serverChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(AcceptPauseHandler())
                }
            }
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture { try accept(channel) }
            }
        if let inheritedSocket = context.inheritedMeshSocket {
            serverChannel = try bootstrap.withBoundSocket(inheritedSocket).wait()
        } else {
            serverChannel = try bootstrap.bind(host: listenAddress.host, port: listenAddress.port).wait()
        }
        logger.info("mesh listening", metadata: ["address": "\(listenAddress)", "peers": "\(peers.keys.sorted())",
                                                 "tls": "\(tlsContexts == nil ? "off" : "on (TLS 1.3, mutual)")"])
        try eventLoop.submit { [self] in
            started = true
            dialAtStart()
            startHeartbeat()
        }.wait()
    }

    /// Every `ping_interval` from now; a reload that changes the interval calls it again.
    func startHeartbeat() {
        heartbeatTimer?.cancel()
        heartbeatTimer = eventLoop.scheduleRepeatedTask(initialDelay: settings.pingInterval, delay: settings.pingInterval) { [weak self] _ in
            self?.heartbeat()
        }
    }

    /// The relay's table: a peer's sids start with its tag.
    static func tags(of peers: Set<String>) -> [String: String] {
        Dictionary(peers.map { (NodeTag.of(nodeName: $0), $0) }, uniquingKeysWith: { first, _ in first })
    }

    public var boundAddress: SocketAddress? { serverChannel?.localAddress }

    /// Completes once every live link has acknowledged what was sent to it, or at the deadline.
    /// Used when draining, so no acknowledged say is lost. (A down peer's buffer is not waited
    /// for: it would only be resent on a redial this node will not make.) The ACK or the link
    /// loss that settles the last peer completes it (`settleDrainsIfAcknowledged`).
    public func drain(deadline: NIODeadline) -> EventLoopFuture<Void> {
        eventLoop.flatSubmit { [self] in
            allSentAcknowledged ? eventLoop.makeSucceededFuture(true) : drainWaiters.wait(until: deadline)
        }.map { [self] acknowledged in
            if !acknowledged { logger.warning("mesh drain deadline passed with unacknowledged PUBs") }
        }
    }

    private var allSentAcknowledged: Bool {
        peers.values.allSatisfy { !$0.isUp || $0.outbox.count == 0 }
    }

    /// Called after every event that can shrink what is unacknowledged on live links.
    func settleDrainsIfAcknowledged() {
        if !drainWaiters.isEmpty && allSentAcknowledged { drainWaiters.settle() }
    }

    /// Says goodbye on every link and closes the listener.
    public func stop() -> EventLoopFuture<Void> {
        eventLoop.submit { [self] in
            stopping = true
            heartbeatTimer?.cancel()
            for peer in peers.values {
                peer.redialTimer?.cancel()
                peer.link?.close(reason: "node \(localName) is shutting down")
            }
        }.flatMap { [self] in
            serverChannel?.close() ?? eventLoop.makeSucceededVoidFuture()
        }.recover { _ in }
    }

    /// /healthz lists the peers with and without a live link; a mesh node serves its own
    /// clients whatever its links do, so it is always ready.
    public var health: FanoutHealth {
        let status = peerStatus()
        return FanoutHealth(
            isReady: true,
            statusLine: "mesh peers up \(status.up.count)/\(status.up.count + status.down.count)",
            details: [("mesh", .object([
                ("peers_up", .array(status.up.map { .string($0) })),
                ("peers_down", .array(status.down.map { .string($0) })),
            ]))]
        )
    }

    /// Peers with a live link and without, each sorted by name.
    public func peerStatus() -> (up: [String], down: [String]) {
        let status = linkStatus.withLockedValue { $0 }
        return (status.filter(\.value).map(\.key).sorted(), status.filter { !$0.value }.map(\.key).sorted())
    }

    /// An accepted connection gets a link in its handshake. A stranger holding many half-open
    /// handshakes must not keep real peers out: past `maxUnauthenticatedLinks` accepted ones,
    /// the oldest accepted handshake makes room for the newest. This node's own dials are not
    /// counted and never closed for it: they go to peers of cluster.conf, and at N ≈ 100 a cold
    /// start has ~50 of them pending at once (docs/SCALE.md).
    func accept(_ channel: any Channel) throws {
        guard !stopping else {
            channel.close(promise: nil)
            return
        }
        let accepted = pendingHandshakes.filter { $0.dialedPeer == nil }
        if accepted.count >= Self.maxUnauthenticatedLinks {
            metrics.rejected("too_many_handshakes")
            accepted.first?.close(reason: "too many pending handshakes")
        }
        try addLinkHandlers(to: channel, role: .acceptor)
    }

    /// A link's pipeline: the transport sniffer, NIOSSL when the mesh is TLS, then the link.
    func addLinkHandlers(to channel: any Channel, role: MeshHandshake.Role) throws {
        let pipeline = channel.pipeline.syncOperations
        try pipeline.addHandler(MeshTransportSniffer(expectsTLS: tlsContexts != nil))
        if let tlsContexts {
            switch role {
            case .acceptor:
                try pipeline.addHandler(NIOSSLServerHandler(context: tlsContexts.server))
            case .dialer:
                // No SNI: node names need not be host names, and the name check is our own.
                try pipeline.addHandler(NIOSSLClientHandler(context: tlsContexts.client, serverHostname: nil))
            }
        }
        try pipeline.addHandler(makeLinkHandler(role: role))
    }

    private func makeLinkHandler(role: MeshHandshake.Role) -> PeerLinkHandler {
        let handshake = MeshHandshake(localName: localName, localEpoch: epoch, secret: secret, role: role, knownPeers: knownPeers)
        let link = PeerLinkHandler(mesh: self, handshake: handshake, maxFrame: settings.maxFrame, tls: tlsContexts != nil)
        pendingHandshakes.append(link)
        return link
    }

    // MARK: Dialing

    func dial(_ peer: PeerState) {
        guard !stopping, !peer.removed, !peer.isUp, !peer.dialing else { return }
        peer.dialing = true
        let peerName = peer.name
        let address = peer.address
        ClientBootstrap(group: eventLoop)
            .connectTimeout(.seconds(2))
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { [self] channel in
                // One handler per connection attempt, made only once a channel exists, so a
                // dial that fails before that (a name that does not resolve) leaves nothing.
                channel.eventLoop.makeCompletedFuture {
                    try addLinkHandlers(to: channel, role: .dialer(expectedPeer: peerName))
                }
            }
            .connect(host: address.host, port: address.port)
            .assumeIsolated()
            .whenComplete { [self] result in
                peer.dialing = false
                switch result {
                case .failure(let error):
                    logger.debug("mesh dial failed", metadata: ["peer": "\(peer.name)", "error": "\(error)"])
                    scheduleRedial(peer)
                case .success(let channel):
                    // A reload removed the peer or moved it while this dial was under way (before
                    // any frame was read): its close redials the new address, or nothing.
                    if peer.removed || peer.address != address { channel.close(promise: nil) }
                }
            }
    }

    /// Every peer this node dials, each after its own share of the start window
    /// (`scheduleFirstDial`).
    func dialAtStart() {
        for peer in peers.values where peer.weDial { scheduleFirstDial(peer) }
    }

    /// The first dial of a peer (at start, or when a reload adds or moves it) waits a random
    /// part of a window that grows with the cluster, up to 1 s (`ReconnectBackoff.firstDialDelayMs`).
    /// Nodes started together, or reloaded together, would otherwise all dial at the same instant:
    /// each node then takes N − 1 handshakes at once, and past 64 accepted ones it closes some
    /// (`accept`), which are redialed and churn (docs/SCALE.md).
    func scheduleFirstDial(_ peer: PeerState) {
        let delay = ReconnectBackoff.firstDialDelayMs(peers: peers.count)
        scheduleDial(peer, in: .milliseconds(Int64(delay)))
    }

    func scheduleRedial(_ peer: PeerState) {
        scheduleDial(peer, in: nil)
    }

    /// A dial after `delay`, or after the backoff's next delay when nil (a redial).
    private func scheduleDial(_ peer: PeerState, in delay: TimeAmount?) {
        guard !stopping, !peer.removed, peer.weDial, !peer.isUp, !peer.dialing, peer.redialTimer == nil else { return }
        let wait = delay ?? peer.backoff.nextDelay()
        peer.nextDialAt = eventLoop.now + wait
        peer.redialTimer = eventLoop.assumeIsolated().scheduleTask(in: wait) { [self] in
            peer.redialTimer = nil
            peer.nextDialAt = nil
            dial(peer)
        }
    }

    // MARK: Link events (called by PeerLinkHandler, on the mesh loop)

    func resumePoint(for peerName: String) -> (epoch: UInt64, sequence: UInt64) {
        guard let peer = peers[peerName] else { return (0, 0) }
        return (peer.inbound.epoch, peer.inbound.lastSequence)
    }

    func linkEstablished(_ link: PeerLinkHandler, _ established: MeshHandshake.Established) -> PeerState? {
        guard let peer = peers[established.peer] else { return nil }
        // Before anything is written, so the link's counters include what link-up sends.
        link.bind(to: peer)
        if let old = peer.link, old !== link {
            relayLinkDown(old)
            old.close(reason: "replaced by a newer link")
            // The old link's close will find itself replaced and say nothing: if the peer
            // restarted meanwhile, the process it belonged to is gone now.
            if established.peerEpoch != peer.linkEpoch { recoveryPeerLost(peer, epoch: peer.linkEpoch) }
        }
        peer.link = link
        relayLinkUp(link, peer: peer.name)
        peer.linkEpoch = established.peerEpoch
        peer.originID = MessageOrigin.originID(epoch: established.peerEpoch)
        peer.lastHeard = .now()
        // Not a reset: only a link that stays up a while starts the backoff over (`linkClosed`).
        peer.backoff.linkUp(at: eventLoop.now)
        peer.redialTimer?.cancel()
        peer.redialTimer = nil
        peer.nextDialAt = nil
        peer.metrics.linkUps.increment()
        peer.inbound.peerConnected(epoch: established.peerEpoch)
        // Resume: forget what the peer already has; a restarted peer gets nothing old.
        if established.peerReceivedEpoch == epoch {
            peer.outbox.resume(peerHas: established.peerReceivedSequence)
        } else {
            _ = peer.outbox.restart()
        }
        announceRooms(on: link, to: peer)
        updatePeerGauges()
        sendAllSessionRecords(to: peer, link: link)
        for entry in peer.outbox.entries {
            link.write(entry.frame, flush: false)
        }
        peer.outbox.markAllWritten()
        logger.info("mesh link up", metadata: ["peer": "\(peer.name)", "resent": "\(peer.outbox.count)",
                                               "remote": "\(link.remoteDescription)"])
        return peer
    }

    /// This node's rooms, in frames under `max_frame`: a SNAPSHOT and, past what it holds, SUBs.
    private func announceRooms(on link: PeerLinkHandler, to peer: PeerState) {
        let announcement = InterestAnnouncement(rooms: localRooms, maxFrame: settings.maxFrame)
        for frame in announcement.frames { link.send(frame, flush: false) }
        if announcement.frames.count > 1 {
            logger.info("mesh room table split over several frames", metadata: [
                "peer": "\(peer.name)", "rooms": "\(localRooms.count)", "subs": "\(announcement.frames.count - 1)",
            ])
        }
        if !announcement.unsendable.isEmpty {
            logger.warning("mesh rooms with ids too long for max_frame not announced", metadata: [
                "peer": "\(peer.name)", "rooms": "\(announcement.unsendable.count)",
            ])
        }
    }

    /// A link's handshake ended (authenticated, or the link went away before that).
    func handshakeEnded(_ link: PeerLinkHandler) {
        pendingHandshakes.removeAll { $0 === link }
    }

    func linkClosed(_ link: PeerLinkHandler) {
        // Whether or not it is still the peer's link: what was relayed on it is lost either way.
        relayLinkDown(link)
        guard let peer = link.peer else {
            // A dial that never authenticated: try again later.
            if let name = link.dialedPeer, let peer = peers[name] { scheduleRedial(peer) }
            return
        }
        guard peer.link === link else { return }
        peer.link = nil
        peer.ackTimer?.cancel()
        peer.ackTimer = nil
        // A link that lasted `stableAfter` (10 s) starts the backoff over; a peer that takes the
        // link and drops it at once (a frame it refuses, a crash at start) is redialed later and
        // later instead of every 100 ms.
        peer.backoff.linkDown(at: eventLoop.now)
        logger.info("mesh link down", metadata: ["peer": "\(peer.name)", "buffered": "\(peer.outbox.count)"])
        updatePeerGauges()
        // Down (or said goodbye): the sessions live on that process are held from now.
        recoveryPeerLost(peer, epoch: peer.linkEpoch)
        scheduleRedial(peer)
        settleDrainsIfAcknowledged()
    }

    func received(_ frame: MeshFrame, from peer: PeerState, link: PeerLinkHandler) {
        guard peer.link === link else { return }
        peer.lastHeard = .now()
        switch frame {
        case .pub(let sequence, let room, let payload):
            peer.metrics.pubsReceived.increment()
            switch peer.inbound.accept(sequence) {
            case .duplicate:
                metrics.duplicates.increment()
            case .deliver(let gap):
                if gap > 0 { metrics.gaps.increment(by: Int64(gap)) }
                if let recovery {
                    deliverUnstamped(ChatBroadcast(room: room, socketPacket: payload), from: peer, recovery)
                } else {
                    delivery?.deliverLocally(ChatBroadcast(room: room, socketPacket: payload))
                }
            }
            countForAck(from: peer)
        case .pubStamped(let sequence, let originSequence, let room, let payload):
            peer.metrics.pubsReceived.increment()
            switch peer.inbound.accept(sequence) {
            case .duplicate:
                metrics.duplicates.increment()
            case .deliver(let gap):
                if gap > 0 { metrics.gaps.increment(by: Int64(gap)) }
                var broadcast = ChatBroadcast(room: room, socketPacket: payload)
                broadcast.origin = MessageOrigin(origin: peer.originID, sequence: originSequence)
                deliverStamped(broadcast, linkGap: gap)
            }
            countForAck(from: peer)
        case .session(let record):
            receivedSession(record, from: peer)
        case .ack(let sequence):
            peer.outbox.acknowledge(upTo: sequence)
            settleDrainsIfAcknowledged()
        case .snapshot(let rooms):
            peer.interest = Set(rooms)
        case .sub(let room):
            peer.interest.insert(room)
        case .unsub(let room):
            peer.interest.remove(room)
        case .ping(let value):
            link.send(.pong(value), flush: false)
        case .pong:
            break
        case .goodbye(let reason):
            logger.info("mesh peer said goodbye", metadata: ["peer": "\(peer.name)", "reason": "\(reason)"])
            link.close(reason: "goodbye acknowledged")
        case .relayRequest, .relayReply, .relayFrame, .relayClose:
            receivedRelay(frame, from: peer, link: link)
        case .hello, .auth:
            logger.warning("mesh protocol violation", metadata: ["peer": "\(peer.name)", "frame": "\(frame.type)"])
            metrics.rejected("protocol")
            link.close(reason: "\(frame.type) frame after authentication")
        }
    }

    /// A PUB arrived (delivered or not): acknowledge it with the next ACK, sent after
    /// `ackEvery` of them or `ackDelay` after the first.
    private func countForAck(from peer: PeerState) {
        peer.unacknowledged += 1
        if peer.unacknowledged >= Self.ackEvery {
            sendAck(to: peer)
        } else if peer.ackTimer == nil {
            peer.ackTimer = eventLoop.assumeIsolated().scheduleTask(in: Self.ackDelay) { [self] in
                peer.ackTimer = nil
                sendAck(to: peer)
            }
        }
    }

    private func sendAck(to peer: PeerState) {
        guard peer.unacknowledged > 0, let link = peer.link else { return }
        peer.unacknowledged = 0
        link.send(.ack(peer.inbound.lastSequence), flush: false)
    }

    func scheduleFlush(_ link: PeerLinkHandler) {
        if pendingFlush.isEmpty {
            eventLoop.execute { [self] in
                let links = pendingFlush
                pendingFlush.removeAll(keepingCapacity: true)
                for link in links { link.flushNow() }
            }
        }
        pendingFlush.append(link)
    }

    /// Pings every live link, closes links silent for two intervals, and ages out what is
    /// buffered for peers silent for longer than buffer_ms.
    private func heartbeat() {
        let now = NIODeadline.now()
        let onTime = heartbeatPunctuality.beat(at: now)
        let silence = settings.pingInterval * 2
        let expiry = (now - settings.bufferTime).uptimeNanoseconds
        var buffered = 0
        for peer in peers.values {
            if let link = peer.link {
                if onTime, now - peer.lastHeard > silence {
                    logger.warning("mesh peer silent, closing link", metadata: ["peer": "\(peer.name)"])
                    link.close(reason: "heartbeat timeout")
                } else {
                    link.send(.ping(now.uptimeNanoseconds), flush: false)
                }
            } else if now - peer.lastHeard > settings.bufferTime {
                // Only an outage longer than buffer_ms (counted from the peer's last frame, not
                // from when a message was queued) costs messages: the seconds it takes to notice
                // a dead link and dial it again do not eat into the bound.
                let dropped = peer.outbox.expire(olderThan: expiry)
                if dropped.total > 0 {
                    metrics.count(dropped)
                    logger.warning("mesh buffer expired for a down peer", metadata: [
                        "peer": "\(peer.name)", "unsent": "\(dropped.unsent)", "unconfirmed": "\(dropped.unconfirmed)",
                    ])
                }
                buffered += peer.outbox.count
            } else {
                buffered += peer.outbox.count
            }
        }
        metrics.buffered.record(buffered)
    }

    func updatePeerGauges() {
        let status = Dictionary(uniqueKeysWithValues: peers.values.map { ($0.name, $0.isUp) })
        linkStatus.withLockedValue { $0 = status }
        let live = Dictionary(uniqueKeysWithValues: peers.values.filter(\.isUp).map { ($0.name, $0.originID) })
        liveLinks.withLockedValue { $0 = live }
        metrics.peersUp.record(live.count)
    }

    // MARK: Fanout

    public func start(delivery: any FanoutDelivery) {
        self.delivery = delivery
        self.recovery = delivery.recovery
        if let recovery = self.recovery { startReplication(to: recovery) }
    }

    public func subscribe(room: String) {
        onMeshLoop { [self] in
            guard localRooms.insert(room).inserted else { return }
            // Flushed now, not at the end of the tick: the SUB must reach the peers before the
            // joiner sees its own join (written later in this tick). Otherwise someone it tells
            // on another node could join there before that node knows of the room's interest
            // here, and that join would not be forwarded to it.
            for peer in peers.values { peer.link?.send(.sub(room), flush: true) }
        }
    }

    public func unsubscribe(room: String) {
        onMeshLoop { [self] in
            guard localRooms.remove(room) != nil else { return }
            for peer in peers.values { peer.link?.send(.unsub(room), flush: false) }
        }
    }

    /// Local members get the message at once; peers with members in the room get it through
    /// the mesh loop, which keeps each publisher's order. With recovery on, the message is
    /// first numbered on the store's loop and delivered there (`publishRecorded`).
    public func publish(_ message: ChatMessage) {
        let broadcast = ChatBroadcast(message)
        if let recovery {
            // Queued like onMeshLoop (never inline), so each publisher's order holds.
            recovery.eventLoop.execute { [self] in publishRecorded(broadcast, recovery) }
            return
        }
        delivery?.deliverLocally(broadcast)
        onMeshLoop { [self] in forward(broadcast) }
    }

    private func forward(_ broadcast: ChatBroadcast) {
        let now = NIODeadline.now().uptimeNanoseconds
        let payload = broadcast.socketPacket
        for peer in peers.values {
            guard peer.interest.contains(broadcast.room) else {
                metrics.suppressed.increment()
                continue
            }
            let sequence = peer.outbox.takeSequence()
            var frame = ByteBufferAllocator().buffer(capacity: 17 + broadcast.room.utf8.count + payload.readableBytes)
            MeshFrameCodec.encode(.pub(sequence: sequence, room: broadcast.room, payload: payload), into: &frame)
            let dropped = peer.outbox.append(sequence: sequence, frame: frame, now: now, written: peer.link != nil)
            if dropped.total > 0 { metrics.count(dropped) }
            if let link = peer.link {
                link.write(frame, flush: false)
                metrics.forwarded.increment()
            }
        }
    }

    /// Always queued, never run inline, even on this loop: subscribe, unsubscribe and publish
    /// arrive from every event loop in the order the hub counted them, and a call run inline
    /// would overtake one already queued. (A room that emptied on another loop and refilled on
    /// this one ended unsubscribed: its new member never got a message from another node.)
    private func onMeshLoop(_ work: @escaping @Sendable () -> Void) {
        eventLoop.execute(work)
    }
}
