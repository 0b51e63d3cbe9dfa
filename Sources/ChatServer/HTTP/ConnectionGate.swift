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
/// The count is of descriptors: a socket counts from its `accept` on the listener's loop
/// (`AcceptedSocketCounter`), through the wait for its own loop to set it up (`admit`), until
/// it is cut or closed; a cut leaves the count as it closes the descriptor, not a loop turn
/// later. An admission at the cap cuts on its own loop, at once, and makes room also for the
/// sockets accepted after it and still waiting for another loop (one cut per loop at most).
/// So the node passes the cap only by sockets of the listener's current read that wait for
/// another loop, fewer than one accept batch (`acceptBatch`; measured under a flood: 1 or 2),
/// plus cuts handed to another loop and not run there yet, which happen only when the
/// admitting loop has no connection of its own to cut. The descriptor reserve absorbs both.
///
/// Per-loop registries keep the hot path free of locks: a connection touches only its own
/// loop's registry; the cap check on accept sums a few atomics.
final class ConnectionGate: Sendable {
    /// Connections the client listener accepts per event-loop turn, the listening socket's
    /// `maxMessagesPerRead` (NIO's default is 4), so a flood leaves the kernel's accept queue
    /// in fewer turns. On a node starved of CPU the accept rate is bound by the CPU either way
    /// (measured on a debug build beside three busy loops on 2 cores: ~400 a second with 4 or 64).
    static let acceptBatch = 64

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
    /// Accepted sockets not yet admitted or refused on their own loop.
    private let inFlight = AcceptedSockets()
    /// Cuts handed to another loop that has not run them yet: their sockets still count, but
    /// room for them is already being made.
    private let pendingRemoteCuts = Atomic<Int>(0)

    init(eventLoops: [any EventLoop], headerTimeout: TimeAmount, socketCap: Int, logger: Logger,
         countCut: @escaping @Sendable (ClientSocketRegistry.CutReason) -> Void) {
        self.socketCapAtomic = Atomic(socketCap)
        self.logger = logger
        self.countCut = countCut
        let registries = eventLoops.map { ClientSocketRegistry(eventLoop: $0, headerTimeout: headerTimeout, countCut: countCut) }
        self.registries = registries
        self.registryByLoop = Dictionary(uniqueKeysWithValues: registries.map { (ObjectIdentifier($0.eventLoop), $0) })
    }

    /// Client sockets the node holds: admitted and not cut or closed, or accepted and waiting
    /// for their own loop.
    var openSockets: Int { registries.reduce(0) { $0 + $1.openCount } + inFlight.count }
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

    /// From the listener's loop, as `accept` returns a socket (`AcceptedSocketCounter`): it
    /// counts from now, not from when its own loop gets round to `admit`.
    func accepted(_ channel: any Channel) {
        inFlight.insert(channel)
    }

    /// From the child channel initializer, on the new channel's loop, before any other
    /// handler: puts the connection's tracker first in its pipeline and returns true, or
    /// returns false when the node is full of real clients (the caller closes the channel).
    func admit(_ channel: any Channel) throws -> Bool {
        inFlight.remove(channel)
        let registry = registry(for: channel.eventLoop)
        // Sockets past the cap with this one, less those whose room another loop is making.
        let over = openSockets - pendingRemoteCuts.load(ordering: .relaxed) + 1 - socketCap
        if over > 0 {
            // Room for this one, and for those accepted after it and still waiting for their
            // loop: a loop makes room for the others' sockets too, or a loop starved of CPU
            // would let its accepted sockets pile up past the cap. A few cuts at most per
            // admission, one per loop, so a burst is spread over the admissions that follow.
            var made = 0
            while made < min(over, registries.count), makeRoom(from: registry) { made += 1 }
            guard made > 0 else {
                countCut(.socketCap)
                warnCapReached(evicting: false)
                return false
            }
            warnCapReached(evicting: true)
        }
        try channel.pipeline.syncOperations.addHandler(ClientConnectionTracker(registry: registry), name: ClientConnectionTracker.name)
        return true
    }

    /// Cuts one connection: the oldest unfinished one of this loop, at once, or else of another
    /// loop, on that loop; with none left, the idle keep-alive connection that has waited
    /// longest for its next request, this loop's first. This loop's go first because a cut
    /// here closes the descriptor now, while one handed to another loop waits for that loop's
    /// next turn and the cap is passed meanwhile; connections of every loop are timed out
    /// alike, so the one cut here is no younger than the node's oldest by much.
    private func makeRoom(from registry: ClientSocketRegistry) -> Bool {
        if registry.evictOldestUnfinished() { return true }
        if let target = oldest(among: registries, { $0.oldestUnfinishedSince }) {
            cutRemotely(on: target) { $0.evictOldestUnfinished() }
            return true
        }
        if registry.evictLongestAwaiting() { return true }
        if let target = oldest(among: registries, { $0.oldestAwaitingSince }) {
            cutRemotely(on: target) { $0.evictLongestAwaiting() }
            return true
        }
        return false
    }

    private func oldest(among registries: [ClientSocketRegistry], _ since: (ClientSocketRegistry) -> NIODeadline?) -> ClientSocketRegistry? {
        registries.compactMap { registry in since(registry).map { (registry, $0) } }.min { $0.1 < $1.1 }?.0
    }

    private func cutRemotely(on target: ClientSocketRegistry, _ cut: @escaping @Sendable (ClientSocketRegistry) -> Bool) {
        pendingRemoteCuts.add(1, ordering: .relaxed)
        target.eventLoop.execute {
            _ = cut(target)
            self.pendingRemoteCuts.subtract(1, ordering: .relaxed)
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

    /// For the client listener's server channel: every accepted socket counts from its accept
    /// (`AcceptedSocketCounter`), and an `accept` that fails for want of descriptors pauses
    /// accepting for a moment instead of spinning a core (see `AcceptPauseHandler`).
    func addListenerHandlers(to serverChannel: any Channel) -> EventLoopFuture<Void> {
        serverChannel.eventLoop.makeCompletedFuture {
            try serverChannel.pipeline.syncOperations.addHandler(AcceptPauseHandler())
            try serverChannel.pipeline.syncOperations.addHandler(AcceptedSocketCounter(gate: self))
        }
    }
}
