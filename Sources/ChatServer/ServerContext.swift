import ChatCore
import ClusterConfig
import Logging
import NIOConcurrencyHelpers
import NIOCore
import SocketIO
import Synchronization

/// What every connection handler of one node shares: settings, the session table, the rooms,
/// metrics and the logger. Its references never change after start, so it is shared across
/// event loops freely; the settings a reload replaces (`[engineio]`, `[limits]`) sit in
/// `LiveSetting` boxes that any loop reads safely (`applySettings`).
final class ServerContext: Sendable {
    let nodeName: String
    /// The start of every Engine.IO sid made here, so any node can tell this one owns it.
    let nodeTag: String
    private let liveEngine: LiveSetting<EngineSettings>
    private let liveLimits: LiveSetting<LimitSettings>
    /// The chat protocol's part of `[limits]`: each `ChatSession` keeps a copy and checks its
    /// generation on every join and say (an atomic load, no lock on the say path).
    let chatLimits: LiveSetting<ChatLimits>
    /// `[limits] outbound_buffer`, read for every packet queued for a polling client: an atomic
    /// rather than the lock behind `limits`, so delivering to a room takes no lock per member.
    private let outboundBufferAtomic: Synchronization.Atomic<Int>
    /// Told of new `[limits]` (old, new) on a reload, after the boxes hold them (the socket gate).
    private let limitsObservers = NIOLockedValueBox<[@Sendable (LimitSettings, LimitSettings) -> Void]>([])

    /// `[engineio]` as of now. Takes a lock: read it per request, session or timer, not per
    /// message delivered.
    var engine: EngineSettings { liveEngine.value }
    /// `[limits]` as of now (a lock, as `engine`).
    var limits: LimitSettings { liveLimits.value }
    /// `[limits] outbound_buffer` as of now, lock-free.
    var outboundBuffer: Int { outboundBufferAtomic.load(ordering: .relaxed) }
    let sessions: SessionRegistry
    let hub: RoomHub
    /// Connection-state recovery's sessions and history (`[recovery] enabled = on`), confined
    /// to its own loop (the fanout's); nil when recovery is off.
    let recovery: RecoveryStore?
    /// With recovery on a fanout that subscribes per local member (Redis): keeps held
    /// sessions' rooms subscribed. Nil otherwise.
    let heldRooms: HeldRoomInterest?
    /// Whether a session held here can still be recovered once this node has stopped: the
    /// mesh replicates records and history to every node. Otherwise (Redis, one node) a node
    /// that drains ends its sessions, with their quits, as without recovery.
    let sessionsOutliveNode: Bool
    /// Relays requests for sessions other nodes own to them (the mesh); nil when every session
    /// a client can name is this node's (Redis, one node).
    let relay: (any SessionRelay)?
    let metrics: ServerMetrics
    let logger: Logger
    let startedAt: NIODeadline
    /// The heartbeat timers of each event loop's sessions.
    private let heartbeatWheels: [ObjectIdentifier: HeartbeatWheel]
    /// The shortest and longest heartbeat times any session of this process may still run by:
    /// a session keeps the times it opened with, so after reloads the wheels must serve every
    /// set of times since the start, not just the last two.
    private let heartbeatSpan: NIOLockedValueBox<(shortest: TimeAmount, longest: TimeAmount)>
    /// Set when the node drains: new sessions are refused (503), existing ones wind down.
    let draining = NIOLockedValueBox(false)
    var isDraining: Bool { draining.withLockedValue { $0 } }

    /// Readiness and extra `/healthz` fields from the fanout (mesh peers, Redis state).
    let health: @Sendable () -> HealthDetails

    init(nodeName: String, engine: EngineSettings, limits: LimitSettings, hub: RoomHub, metrics: ServerMetrics, logger: Logger,
         eventLoops: [any EventLoop], recovery: RecoveryStore? = nil, heldRooms: HeldRoomInterest? = nil,
         sessionsOutliveNode: Bool = false, relay: (any SessionRelay)? = nil,
         health: @escaping @Sendable () -> HealthDetails = { HealthDetails(ready: true, fields: []) }) {
        self.health = health
        self.nodeName = nodeName
        self.nodeTag = NodeTag.of(nodeName: nodeName)
        self.liveEngine = LiveSetting(engine)
        self.liveLimits = LiveSetting(limits)
        self.chatLimits = LiveSetting(Self.chatPart(of: limits))
        self.outboundBufferAtomic = Synchronization.Atomic(limits.outboundBuffer)
        self.sessions = SessionRegistry()
        self.hub = hub
        self.recovery = recovery
        self.heldRooms = heldRooms
        self.sessionsOutliveNode = sessionsOutliveNode
        self.relay = relay
        self.metrics = metrics
        self.logger = logger
        self.startedAt = .now()
        let shortest = min(engine.pingInterval, engine.pingTimeout)
        let longest = max(engine.pingInterval, engine.pingTimeout)
        self.heartbeatSpan = NIOLockedValueBox((shortest, longest))
        self.heartbeatWheels = Dictionary(uniqueKeysWithValues: eventLoops.map {
            (ObjectIdentifier($0), HeartbeatWheel(eventLoop: $0, shortestDelay: shortest, longestDelay: longest))
        })
    }

    static func chatPart(of limits: LimitSettings) -> ChatLimits {
        ChatLimits(
            usernameMax: limits.usernameMax, textMax: limits.textMax, roomIDMax: limits.roomIDMax,
            sayRate: limits.sayRate, sayBurst: limits.sayBurst
        )
    }

    /// A reload's `[engineio]` and `[limits]`: what reads them per request, accept or session
    /// open takes them from now on; sessions pick up new chat limits on their next join or
    /// say; the heartbeat wheels retune (on their loops) to the new shortest and longest
    /// heartbeat times, keeping every deadline already set; observers (the socket gate) follow.
    /// Called by one reload at a time (the node's signal queue).
    func applySettings(engine: EngineSettings, limits: LimitSettings) {
        let oldEngine = liveEngine.value
        let oldLimits = liveLimits.value
        liveEngine.set(engine)
        liveLimits.set(limits)
        outboundBufferAtomic.store(limits.outboundBuffer, ordering: .relaxed)
        if limits.outboundBuffer != oldLimits.outboundBuffer {
            // Once per session per reload, on its loop: connected WebSockets take the new bound.
            for session in sessions.all() {
                session.eventLoop.execute { session.outboundBoundChanged(limits.outboundBuffer) }
            }
        }
        let chat = Self.chatPart(of: limits)
        if chat != chatLimits.value { chatLimits.set(chat) }
        if (oldEngine.pingInterval, oldEngine.pingTimeout) != (engine.pingInterval, engine.pingTimeout) {
            // Connected sessions keep their old times (their handshake announced them), so the
            // wheels must still serve those as well as the new ones.
            let (shortest, longest) = heartbeatSpan.withLockedValue { span in
                span.shortest = min(span.shortest, engine.pingInterval, engine.pingTimeout)
                span.longest = max(span.longest, engine.pingInterval, engine.pingTimeout)
                return span
            }
            for wheel in heartbeatWheels.values {
                wheel.eventLoop.execute { wheel.retune(shortestDelay: shortest, longestDelay: longest) }
            }
        }
        for observer in limitsObservers.withLockedValue({ $0 }) { observer(oldLimits, limits) }
    }

    /// Calls `observer` with the old and the new `[limits]` on every `applySettings`.
    func observeLimits(_ observer: @escaping @Sendable (LimitSettings, LimitSettings) -> Void) {
        limitsObservers.withLockedValue { $0.append(observer) }
    }

    func heartbeatWheel(for eventLoop: any EventLoop) -> HeartbeatWheel {
        guard let wheel = heartbeatWheels[ObjectIdentifier(eventLoop)] else {
            preconditionFailure("event loop \(eventLoop) has no heartbeat wheel")
        }
        return wheel
    }

    /// The Origin check shared by polling (CORS) and WebSocket: no Origin header (non-browser
    /// clients) is always allowed; otherwise the allow list decides, nil meaning allow all.
    func isOriginAllowed(_ origin: String?) -> Bool {
        guard let origin, let allowed = engine.allowedOrigins else { return true }
        return allowed.contains(origin)
    }
}

/// What the fanout adds to `/healthz`: whether the node can serve rooms, and details.
struct HealthDetails: Sendable {
    var ready: Bool
    var fields: [(String, JSONValue)]
}
