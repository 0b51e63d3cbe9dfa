import ChatCore
import ClusterConfig
import Logging
import NIOCore
import Synchronization

/// Admits accepted client sockets up to the node's cap, which sits below the descriptor limit
/// so `/healthz`, `/metrics`, mesh links and Redis always find a descriptor and `accept` never
/// meets EMFILE. At the cap, a new connection first makes room by cutting the oldest
/// connection that has not completed a request head or upgrade (its own loop's, else another
/// loop's); when every open socket is a real client, the new one is refused (closed at once).
///
/// Per-loop registries keep the hot path free of locks: a connection touches only its own
/// loop's registry; the cap check on accept sums a few atomics.
final class ConnectionGate: Sendable {
    /// Sockets admitted; a reload may change it (`[limits] max_sockets`, `fd_reserve`), and
    /// every accept on any loop reads it, hence an atomic.
    var socketCap: Int { socketCapAtomic.load(ordering: .relaxed) }
    private let socketCapAtomic: Atomic<Int>
    private let registries: [ClientSocketRegistry]
    private let registryByLoop: [ObjectIdentifier: ClientSocketRegistry]
    private let logger: Logger
    private let countCut: @Sendable (ClientSocketRegistry.CutReason) -> Void
    /// Uptime (ns) of the last "cap reached" warning: one a minute at most under a flood.
    private let lastCapWarning = Atomic<UInt64>(0)

    init(eventLoops: [any EventLoop], headerTimeout: TimeAmount, socketCap: Int, logger: Logger,
         countCut: @escaping @Sendable (ClientSocketRegistry.CutReason) -> Void) {
        self.socketCapAtomic = Atomic(socketCap)
        self.logger = logger
        self.countCut = countCut
        let registries = eventLoops.map { ClientSocketRegistry(eventLoop: $0, headerTimeout: headerTimeout, countCut: countCut) }
        self.registries = registries
        self.registryByLoop = Dictionary(uniqueKeysWithValues: registries.map { (ObjectIdentifier($0.eventLoop), $0) })
    }

    /// Open client sockets of the node.
    var openSockets: Int { registries.reduce(0) { $0 + $1.openCount } }
    /// Open client sockets that have not completed a request head or upgrade.
    var unfinishedSockets: Int { registries.reduce(0) { $0 + $1.unfinishedCount } }

    func registry(for eventLoop: any EventLoop) -> ClientSocketRegistry {
        guard let registry = registryByLoop[ObjectIdentifier(eventLoop)] else {
            preconditionFailure("event loop \(eventLoop) has no client socket registry")
        }
        return registry
    }

    /// A reload's `[limits]`: the cap is recomputed at once; each loop's header timer takes the
    /// new `header_timeout` on that loop.
    func apply(headerTimeout: TimeAmount, socketCap: Int) {
        socketCapAtomic.store(socketCap, ordering: .relaxed)
        for registry in registries {
            registry.eventLoop.execute { registry.setHeaderTimeout(headerTimeout) }
        }
    }

    /// From the child channel initializer, on the new channel's loop, before any other
    /// handler: puts the connection's tracker first in its pipeline and returns true, or
    /// returns false when the node is full of real clients (the caller closes the channel).
    func admit(_ channel: any Channel) throws -> Bool {
        let registry = registry(for: channel.eventLoop)
        if openSockets >= socketCap, !makeRoom(from: registry) {
            countCut(.socketCap)
            warnCapReached(evicting: false)
            return false
        }
        try channel.pipeline.syncOperations.addHandler(ClientConnectionTracker(registry: registry), name: ClientConnectionTracker.name)
        return true
    }

    /// Cuts the node's oldest unfinished connection or, with none left, the idle keep-alive
    /// connection that has waited longest for its next request: at once when it is on this
    /// loop, else on its own loop (the new connection does not wait for that; the cap may be
    /// passed by a connection or two meanwhile, which the descriptor reserve absorbs).
    private func makeRoom(from registry: ClientSocketRegistry) -> Bool {
        func oldest(_ since: (ClientSocketRegistry) -> NIODeadline?) -> ClientSocketRegistry? {
            registries.compactMap { registry in since(registry).map { (registry, $0) } }.min { $0.1 < $1.1 }?.0
        }
        if let target = oldest({ $0.oldestUnfinishedSince }) {
            evict(on: target, from: registry) { $0.evictOldestUnfinished() }
        } else if let target = oldest({ $0.oldestAwaitingSince }) {
            evict(on: target, from: registry) { $0.evictLongestAwaiting() }
        } else {
            return false
        }
        warnCapReached(evicting: true)
        return true
    }

    private func evict(on target: ClientSocketRegistry, from registry: ClientSocketRegistry,
                       _ cut: @escaping @Sendable (ClientSocketRegistry) -> Bool) {
        if target === registry {
            _ = cut(target)
        } else {
            target.eventLoop.execute { _ = cut(target) }
        }
    }

    private func warnCapReached(evicting: Bool) {
        let now = NIODeadline.now().uptimeNanoseconds
        let last = lastCapWarning.load(ordering: .relaxed)
        guard last == 0 || (now > last && now - last >= 60_000_000_000),
              lastCapWarning.compareExchange(expected: last, desired: now, ordering: .relaxed).exchanged
        else { return }
        logger.warning("client socket cap reached", metadata: [
            "max_sockets": "\(socketCap)",
            "unfinished": "\(unfinishedSockets)",
            "action": "\(evicting ? "cutting the oldest connections without a request" : "refusing new connections: every socket is a client")",
        ])
    }
}

extension ConnectionGate {
    /// The gate of a node's client listener: `[limits] header_timeout`, and the socket cap from
    /// `max_sockets` / `fd_reserve` and the open-file limit; its counts feed `/metrics`.
    convenience init(server: ServerContext, eventLoops: [any EventLoop]) {
        let cap = ClientSocketCap(limits: server.limits)
        let metrics = server.metrics
        self.init(eventLoops: eventLoops, headerTimeout: server.limits.headerTimeout, socketCap: cap.value, logger: server.logger) {
            metrics.countCut($0)
        }
        metrics.observeClientSockets { [weak self] in (self?.openSockets ?? 0, self?.unfinishedSockets ?? 0) }
        Self.log(cap, limits: server.limits, logger: server.logger)
        let logger = server.logger
        server.observeLimits { [weak self] old, limits in
            guard let self, (old.maxSockets, old.fdReserve, old.headerTimeout) != (limits.maxSockets, limits.fdReserve, limits.headerTimeout)
            else { return }
            let cap = ClientSocketCap(limits: limits)
            self.apply(headerTimeout: limits.headerTimeout, socketCap: cap.value)
            Self.log(cap, limits: limits, logger: logger)
        }
    }

    private static func log(_ cap: ClientSocketCap, limits: LimitSettings, logger: Logger) {
        var metadata: Logger.Metadata = [
            "max_sockets": "\(cap.value)", "fd_limit": "\(cap.descriptorLimit.map(String.init) ?? "unlimited")",
            "header_timeout_ms": "\(limits.headerTimeout.nanoseconds / 1_000_000)",
        ]
        if cap.lowered {
            metadata["configured_max_sockets"] = "\(limits.maxSockets)"
            logger.warning("max_sockets lowered to keep fd_reserve descriptors free", metadata: metadata)
        } else {
            logger.info("client socket limits", metadata: metadata)
        }
    }

    /// For the client listener's server channel: an `accept` that fails for want of
    /// descriptors pauses accepting for a moment instead of spinning a core (see
    /// `AcceptPauseHandler`).
    static func addAcceptBackoff(to serverChannel: any Channel) -> EventLoopFuture<Void> {
        serverChannel.eventLoop.makeCompletedFuture {
            try serverChannel.pipeline.syncOperations.addHandler(AcceptPauseHandler())
        }
    }
}
