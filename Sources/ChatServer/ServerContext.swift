import ChatCore
import ClusterConfig
import Logging
import NIOConcurrencyHelpers
import NIOCore
import SocketIO

/// What every connection handler of one node shares: settings, the session table, the rooms,
/// metrics and the logger. Immutable after start, so it is shared across event loops freely.
final class ServerContext: Sendable {
    let nodeName: String
    /// The start of every Engine.IO sid made here, so any node can tell this one owns it.
    let nodeTag: String
    let engine: EngineSettings
    let limits: LimitSettings
    let chatLimits: ChatLimits
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
        self.engine = engine
        self.limits = limits
        self.chatLimits = ChatLimits(
            usernameMax: limits.usernameMax, textMax: limits.textMax, roomIDMax: limits.roomIDMax,
            sayRate: limits.sayRate, sayBurst: limits.sayBurst
        )
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
        self.heartbeatWheels = Dictionary(uniqueKeysWithValues: eventLoops.map {
            (ObjectIdentifier($0), HeartbeatWheel(eventLoop: $0, shortestDelay: shortest, longestDelay: longest))
        })
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
