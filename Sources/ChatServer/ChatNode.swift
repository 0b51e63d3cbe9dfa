import ChatCore
import ClusterConfig
import Dispatch
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix

/// One chatmesh node: the client listener (HTTP, Engine.IO, WebSocket), its rooms and its
/// fanout. `start()` binds (or adopts systemd's sockets) and returns; `stop()` drains.
public final class ChatNode: @unchecked Sendable { // serverChannel: set once by start(), before it is read
    public let nodeName: String
    private let group: MultiThreadedEventLoopGroup
    let context: ServerContext
    private let listen: HostPort
    /// `[node NAME] tls_cert` / `tls_key`: `listen` serves HTTPS and WSS.
    private let clientTLS: ClientTLSSettings?
    private var serverChannel: (any Channel)?
    private let logger: Logger
    /// How rooms reach the other nodes (see `FanoutFactory`).
    private let fanout: any Fanout
    /// Connection-state recovery (`[recovery] enabled = on`), on `loops[0]`.
    let recovery: RecoveryStore?
    /// The config the node runs: the one it started with, then what each reload applied.
    private let running: NIOLockedValueBox<ClusterConfig>
    /// Hands a reloaded config to the fanout (the mesh dials added peers, closes removed
    /// ones, takes new link settings); nil when the fanout has nothing to reload.
    private let reloadFanout: FanoutFactory.Reload?
    private let metrics: ServerMetrics
    /// The level every log handler of the process reads (`[cluster] log_level`); nil when the
    /// process did not bootstrap logging through one (tests), so the level cannot change.
    private let logLevel: LiveLogLevel?

    /// `logLevel`: the object `serve` bootstrapped logging with, so that a reload can change
    /// the level of every logger at once; the node applies `config.logLevel` to it now.
    public init(config: ClusterConfig, node: NodeEntry, threads: Int? = nil, logger: Logger, logLevel: LiveLogLevel? = nil) {
        self.nodeName = node.name
        self.logLevel = logLevel
        logLevel?.apply(configured: config.logLevel)
        self.listen = node.listen
        self.clientTLS = node.clientTLS
        self.logger = logger
        self.group = MultiThreadedEventLoopGroup(numberOfThreads: max(1, threads ?? System.coreCount))
        let metrics = ServerMetrics(recovery: config.recovery.enabled)
        self.metrics = metrics
        self.running = NIOLockedValueBox(config)
        let loops = Array(group.makeIterator())
        // One number per process start: the mesh announces it, and recovery's offsets name
        // this process's messages by it, so a restarted node is a new origin.
        let epoch = UInt64.random(in: 1...UInt64.max)
        let (fanout, reloadFanout) = FanoutFactory.make(config: config, node: node, eventLoop: loops[0], epoch: epoch, logger: logger)
        self.fanout = fanout
        self.reloadFanout = reloadFanout
        // On the fanout's loop, where every fanout delivers (see docs/RECOVERY.md).
        let recovery = metrics.recovery.map { recoveryMetrics in
            RecoveryStore(
                policy: Self.recoveryPolicy(config),
                eventLoop: loops[0], localNode: node.name, epoch: epoch, metrics: recoveryMetrics
            )
        }
        self.recovery = recovery
        let hub = RoomHub(
            eventLoops: loops, fanout: fanout, metrics: metrics.chat,
            maxWriteDelay: config.limits.maxWriteDelay,
            transportFramer: { packet, out in
                WebSocketWire.append(opcode: WebSocketWire.textOpcode, payload: packet, to: &out)
            },
            recovery: recovery
        )
        self.context = ServerContext(
            nodeName: node.name, engine: config.engine, limits: config.limits, hub: hub, metrics: metrics, logger: logger,
            eventLoops: loops, recovery: recovery,
            heldRooms: recovery != nil && FanoutFactory.subscribesPerLocalMember(fanout)
                ? HeldRoomInterest(hub: hub, holdFor: config.recovery.maxDisconnection) : nil,
            sessionsOutliveNode: FanoutFactory.replicatesSessions(fanout),
            relay: fanout.relay,
            health: {
                let health = fanout.health
                return HealthDetails(ready: health.isReady, fields: health.details)
            }
        )
        // Before the fanout starts: a peer may relay a request as soon as its link is up.
        fanout.relay?.setOwnerHandler(RelayOwner(server: context))
    }

    static func recoveryPolicy(_ config: ClusterConfig) -> RecoveryPolicy {
        let settings = config.recovery
        return RecoveryPolicy(
            maxDisconnection: settings.maxDisconnection, roomMessages: settings.roomMessages,
            historyBytes: settings.historyBytes, catchUp: settings.catchUp,
            originSilence: settings.maxDisconnection + settings.maxDisconnection + config.mesh.bufferTime
        )
    }

    /// The bound client address (useful when the config asked for port 0).
    public var localAddress: SocketAddress? { serverChannel?.localAddress }

    public var eventLoops: [any EventLoop] { Array(group.makeIterator()) }

    /// Binds the mesh and client listeners, or adopts the sockets systemd passed.
    public func start(inherited: InheritedSockets = InheritedSockets()) throws {
        // The client certificate is read before anything binds: a bad file stops the node
        // while it is still unreachable.
        let tls = try clientTLS.map { try ClientTLSContext(settings: $0) }
        // The fanout first (the mesh binds its listener): a node is reachable by its peers
        // before it takes clients.
        try fanout.start(FanoutStartContext(inheritedMeshSocket: inherited.mesh))
        let context = self.context
        // Header timeout and socket cap for every accepted client socket (see ConnectionGate).
        let gate = ConnectionGate(server: context, eventLoops: eventLoops)
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelInitializer { gate.addListenerHandlers(to: $0) }
            .serverChannelOption(.backlog, value: 4096)
            .serverChannelOption(.maxMessagesPerRead, value: UInt(ConnectionGate.acceptBatch))
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(.maxMessagesPerRead, value: 16)
            // Each channel keeps its receive buffer pooled after a read; chat frames are small,
            // so start at 512 bytes (it still grows for bigger reads) instead of 2 KiB per
            // idle connection.
            .childChannelOption(.recvAllocator, value: AdaptiveRecvByteBufferAllocator(minimum: 64, initial: 512, maximum: 65536))
            .childChannelInitializer { channel in
                // First, below TLS: the header timer runs from the accept; at the socket cap
                // the connection makes room or is refused.
                do {
                    guard try gate.admit(channel) else { return channel.close() }
                    // Per connection, not a bootstrap option: `outbound_buffer` is live, and a
                    // connection accepted after a reload gets the reloaded bound.
                    let outbound = context.outboundBuffer
                    try channel.syncOptions?.setOption(.writeBufferWaterMark, value: .init(low: max(1, outbound / 2), high: max(2, outbound)))
                } catch { return channel.eventLoop.makeFailedFuture(error) }
                // HTTPS/WSS: TLS below everything else, which then reads and writes plain HTTP.
                if let tls {
                    do { try tls.addHandlers(to: channel, server: context) } catch { return channel.eventLoop.makeFailedFuture(error) }
                }
                return channel.pipeline.configureHTTPServerPipeline(
                    withServerUpgrade: (upgraders: [WebSocketUpgrade(server: context)], completionHandler: { RequestHeadObserver.connectionUpgraded($0) })
                ).flatMapThrowing {
                    // A connection that sends nothing for longer than a long-poll can wait is
                    // dropped; after a WebSocket upgrade the Engine.IO heartbeat takes over.
                    let idleLimit = context.engine.pingInterval + context.engine.pingTimeout + .seconds(30)
                    try RequestHeadObserver.addIfTracked(to: channel.pipeline.syncOperations)
                    try channel.pipeline.syncOperations.addHandler(
                        IdleStateHandler(readTimeout: idleLimit), name: HTTPRouter.idleHandlerName
                    )
                    try channel.pipeline.syncOperations.addHandler(HTTPRouter(server: context), name: HTTPRouter.name)
                }
            }
        let channel: any Channel
        if let fd = inherited.client {
            channel = try bootstrap.withBoundSocket(fd).wait()
        } else {
            channel = try bootstrap.bind(host: listen.host, port: listen.port).wait()
        }
        serverChannel = channel
        logger.info("listening", metadata: [
            "address": "\(channel.localAddress.map { "\($0)" } ?? "?")", "inherited": "\(inherited.client != nil)",
            "tls": "\(tls != nil)",
        ])
    }

    /// Ready to serve rooms: listening, and the fanout ready (in Redis mode: subscribed).
    public var isReady: Bool { serverChannel != nil && fanout.health.isReady }

    /// One line for systemd's STATUS=.
    public var statusLine: String {
        var parts = ["\(context.sessions.count) connections", "\(context.hub.roomCount) rooms"]
        if let fanoutStatus = fanout.health.statusLine { parts.append(fanoutStatus) }
        return parts.joined(separator: ", ")
    }

    /// Graceful drain: new sessions are refused (503, so nginx tries the next node); every
    /// WebSocket client gets a close frame and every polling client what is queued for it and
    /// then a 503, so all reconnect elsewhere; after a short grace the listener closes; the
    /// fanout delivers what it holds (mesh PUBs acknowledged by peers, Redis PUBLISHes
    /// answered); then the node stops, all within `timeout`.
    public func stop(timeout: TimeAmount = .seconds(10)) {
        let deadline = NIODeadline.now() + timeout
        logger.info("draining", metadata: ["connections": "\(context.sessions.count)"])
        context.draining.withLockedValue { $0 = true }
        let drained = context.sessions.all().map { session in
            session.eventLoop.submit { session.drain() }
        }
        _ = try? EventLoopFuture.andAllComplete(drained, on: group.next()).wait()
        // Polling clients fetch their last packets with their next GET, at once.
        let grace = min(NIODeadline.now() + .seconds(2), deadline)
        _ = try? context.sessions.whenEmpty(on: group.next(), deadline: grace).wait()
        try? serverChannel?.close().wait()
        let remaining = context.sessions.all().map { session in
            session.eventLoop.submit { session.close(.serverClose) }
        }
        _ = try? EventLoopFuture.andAllComplete(remaining, on: group.next()).wait()
        try? fanout.drain(deadline: deadline).wait()
        try? fanout.stop().wait()
        if let recovery {
            try? recovery.eventLoop.submit { recovery.shutdown() }.wait()
        }
        // Give the close frames a moment to leave the sockets before the loops stop.
        _ = try? group.next().scheduleTask(in: .milliseconds(100)) {}.futureResult.wait()
        try? group.syncShutdownGracefully()
        logger.info("stopped")
    }
}

// MARK: reloading cluster.conf (SIGHUP)

extension ChatNode {
    /// The config the node runs now (the start config, then what reloads applied).
    public var runningConfig: ClusterConfig { running.withLockedValue { $0 } }

    /// A reloaded cluster.conf that could not be loaded: the node says why and runs on.
    public func reloadRejected(_ problem: String) {
        logger.error("reload rejected, the running config stays: \(problem)")
        metrics.countReload(applied: false)
    }

    /// Takes a reloaded cluster.conf that loaded cleanly: logs every change, one line each,
    /// saying whether it is applied now or needs a restart; applies what it can; and runs on
    /// `ConfigDiff.appliedConfig` less what it did not apply (so the next reload reports those
    /// again). The node's own settings (`[engineio]`, `[limits]`, `[recovery]` bounds, the log
    /// level) cannot fail to apply; the fanout's (peers, `[mesh]`, `[redis]` buffer) can.
    /// Blocks until the fanout and the recovery store have taken the change (at most
    /// `fanoutTimeout` each): call it off the event loops, one reload at a time.
    /// - Returns: whether it was applied (false: the fanout refused or timed out).
    @discardableResult
    public func reload(to loaded: ClusterConfig, fanoutTimeout: TimeAmount = .seconds(10)) -> Bool {
        let old = runningConfig
        let diff = ConfigDiff(old: old, new: loaded, localNode: nodeName)
        if diff.isEmpty {
            logger.info("reload: no changes")
            metrics.countReload(applied: true)
            return true
        }
        var target = diff.appliedConfig
        var fanoutChanged = false
        for change in diff.changes {
            guard change.classification == .live else {
                logger.notice("reload: \(change)")
                continue
            }
            if appliesLive(change, in: old) {
                if Self.isFanoutChange(change, in: old) { fanoutChanged = fanoutChanged || reloadFanout != nil }
                logger.info("reload: \(change)")
            } else {
                var kept = change
                kept.classification = .needsRestart
                kept.restartOn = nodeName
                kept.note = notAppliedNote(change)
                logger.notice("reload: \(kept)")
            }
        }
        keepNotApplied(&target, old: old)
        applyNodeSettings(target, old: old, timeout: fanoutTimeout)
        if fanoutChanged, let reloadFanout {
            switch waitFor(reloadFanout(target), timeout: fanoutTimeout) {
            case .success(let report):
                logger.info("reload: \(report)")
            case .failure(let error):
                // The links are as they were: keep the old peers, link settings and buffer
                // bounds, so the next reload tries the same change again. The node's own
                // settings above are applied either way.
                target.nodes = old.nodes
                target.mesh = old.mesh
                target.redisBuffer = old.redisBuffer
                running.withLockedValue { $0 = target }
                logger.error("reload: the fanout did not take the new config, peers, [mesh] and [redis] buffers stay as they were: \(error)")
                metrics.countReload(applied: false)
                return false
            }
        }
        running.withLockedValue { $0 = target }
        metrics.countReload(applied: true)
        logger.info("reload applied", metadata: [
            "changes": "\(diff.changes.count)", "needs_restart": "\(diff.restartChanges.count)",
        ])
        return true
    }

    /// Whether this node applies a change `ConfigDiff` calls live. Should `ConfigDiff` call a
    /// key live that this node cannot swap, it is still reported as waiting for a restart,
    /// never as applied.
    private func appliesLive(_ change: ConfigChange, in old: ClusterConfig) -> Bool {
        switch change.section {
        case "cluster":
            // log_level: only through the handlers `serve` bootstrapped; secret_file: only
            // where the secret came from; drain_timeout: read at SIGTERM from `runningConfig`.
            return change.key != "log_level" || logLevel != nil
        case "node", "mesh":
            // Redis mode has no links to change; the mesh takes them through its reload.
            return old.fanout == .redis || reloadFanout != nil
        case "redis":
            // Only buffer_messages / buffer_ms are live. Unused unless the fanout is Redis;
            // with it, the fanout's reload takes them.
            return old.fanout != .redis || reloadFanout != nil
        case "engineio", "limits", "recovery":
            // The node's live settings and the recovery store take them (`applyNodeSettings`).
            return true
        default:
            return false
        }
    }

    /// Whether the fanout's reload must hear of `change`: peers and `[mesh]`, or the Redis
    /// buffer bounds of a Redis node.
    private static func isFanoutChange(_ change: ConfigChange, in old: ClusterConfig) -> Bool {
        switch change.section {
        case "node", "mesh": return true
        case "redis": return old.fanout == .redis
        default: return false
        }
    }

    private func notAppliedNote(_ change: ConfigChange) -> String {
        switch change.section {
        case "node", "mesh":
            return "this node started without mesh peers, so it has no links to change; restart it"
        case "redis":
            return "this node's Redis fanout does not take new buffer bounds; restart it"
        case "cluster":
            return "this process's logging was not set up to change level; restart it"
        default:
            return "not applied by this node; restart it"
        }
    }

    /// Puts back into `config` the old values of what `appliesLive` does not apply.
    private func keepNotApplied(_ config: inout ClusterConfig, old: ClusterConfig) {
        if logLevel == nil { config.logLevel = old.logLevel }
        if old.fanout == .redis && reloadFanout == nil { config.redisBuffer = old.redisBuffer }
        if reloadFanout == nil && old.fanout == .mesh {
            config.nodes = old.nodes
            config.mesh = old.mesh
        }
    }

    /// The settings the node itself holds: `[engineio]` and `[limits]` (the server context, its
    /// heartbeat wheels and socket gate, each session's chat limits), the recovery store's
    /// bounds (on its loop, waited for) and how long Redis rooms stay held for a session, and
    /// the log level.
    private func applyNodeSettings(_ target: ClusterConfig, old: ClusterConfig, timeout: TimeAmount) {
        if target.engine != old.engine || target.limits != old.limits {
            context.applySettings(engine: target.engine, limits: target.limits)
        }
        if target.limits.maxWriteDelay != old.limits.maxWriteDelay {
            let applied = context.hub.setMaxWriteDelay(target.limits.maxWriteDelay).map { "write pacing applied" }
            if case .failure(let error) = waitFor(applied, timeout: timeout) {
                logger.error("reload: the room shards did not take the new max_write_delay in time: \(error)")
            }
        }
        let policy = Self.recoveryPolicy(target)
        if let recovery, policy != Self.recoveryPolicy(old) {
            let applied = recovery.eventLoop.submit { () -> String in
                recovery.apply(policy: policy)
                return "recovery store bounds applied"
            }
            if case .failure(let error) = waitFor(applied, timeout: timeout) {
                logger.error("reload: the recovery store did not take the new bounds in time: \(error)")
            }
        }
        if target.recovery.maxDisconnection != old.recovery.maxDisconnection {
            context.heldRooms?.holdFor = target.recovery.maxDisconnection
        }
        if target.logLevel != old.logLevel, let logLevel {
            let level = logLevel.apply(configured: target.logLevel)
            logger.info("reload: log level is now \(level)")
        }
    }

    /// Waits for `future` from a thread that is not one of its loops, at most `timeout`.
    private func waitFor(_ future: EventLoopFuture<String>, timeout: TimeAmount) -> Result<String, any Error> {
        let outcome = NIOLockedValueBox<Result<String, any Error>?>(nil)
        let done = DispatchSemaphore(value: 0)
        future.whenComplete { result in
            outcome.withLockedValue { $0 = result }
            done.signal()
        }
        guard done.wait(timeout: .now() + .nanoseconds(Int(timeout.nanoseconds))) == .success,
              let result = outcome.withLockedValue({ $0 }) else {
            return .failure(ReloadTimeout(after: timeout))
        }
        return result
    }
}

/// The fanout did not answer a reload in time.
struct ReloadTimeout: Error, CustomStringConvertible {
    let after: TimeAmount
    var description: String { "no answer within \(after.nanoseconds / 1_000_000) ms" }
}
