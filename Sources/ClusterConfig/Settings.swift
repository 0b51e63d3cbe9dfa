import NIOCore

/// How a published chat message reaches the other nodes.
public enum FanoutKind: String, Sendable, CaseIterable {
    /// Broker-free: nodes keep a static full mesh of TCP links.
    case mesh
    /// The original topology: every node publishes and subscribes through one Redis.
    case redis
}

/// Engine.IO transport settings (`[engineio]`). Sizes are bytes; cluster.conf gives times in
/// milliseconds.
public struct EngineSettings: Sendable, Equatable {
    public var pingInterval: TimeAmount
    public var pingTimeout: TimeAmount
    /// Largest Engine.IO payload / WebSocket message accepted from a client.
    public var maxPayload: Int
    public var upgradeTimeout: TimeAmount
    /// Time allowed between the Engine.IO open and the Socket.IO CONNECT.
    public var connectTimeout: TimeAmount
    /// Origins allowed to connect; `nil` allows every origin (`allowed_origins = *`).
    /// Entries are lowercased `scheme://host[:port]` without a trailing slash.
    public var allowedOrigins: [String]?

    public init() {
        pingInterval = .milliseconds(25_000)
        pingTimeout = .milliseconds(20_000)
        maxPayload = 1_000_000
        upgradeTimeout = .milliseconds(10_000)
        connectTimeout = .milliseconds(45_000)
        allowedOrigins = nil
    }
}

/// Per-connection and per-node limits (`[limits]`).
public struct LimitSettings: Sendable, Equatable {
    /// Unicode scalars.
    public var usernameMax: Int
    /// Unicode scalars.
    public var textMax: Int
    /// Printable characters.
    public var roomIDMax: Int
    /// Says per second per connection (token bucket refill rate).
    public var sayRate: Int
    /// Token bucket size.
    public var sayBurst: Int
    /// Bytes queued to one client before it is cut off.
    public var outboundBuffer: Int
    /// Per node.
    public var maxConnections: Int
    /// How long a broadcast may wait, under load, so that each write to a client carries
    /// more of them; zero writes every event-loop tick.
    public var maxWriteDelay: TimeAmount
    /// `header_timeout`: from a connection's accept (or the end of its previous request) until
    /// its request head is complete; then close (408 first if part of a plain-HTTP head came). Trickled bytes do not reset it.
    public var headerTimeout: TimeAmount
    /// `max_sockets`: accepted client sockets per node; 0 = automatic (the descriptor limit
    /// minus `fdReserve`).
    public var maxSockets: Int
    /// `fd_reserve`: descriptors kept free for /healthz, /metrics, mesh links, Redis and logs.
    public var fdReserve: Int

    public init() {
        usernameMax = 64
        textMax = 4096
        roomIDMax = 128
        sayRate = 20
        sayBurst = 40
        outboundBuffer = 1_048_576
        maxConnections = 10_000
        maxWriteDelay = .milliseconds(10)
        headerTimeout = .milliseconds(10_000)
        maxSockets = 0
        fdReserve = 256
    }
}

/// Node-to-node links (`[mesh]`). Sizes are bytes; cluster.conf gives times in milliseconds.
public struct MeshSettings: Sendable, Equatable {
    /// Time between mesh PINGs; a link silent for two intervals is dead.
    public var pingInterval: TimeAmount
    /// PUBs kept per peer, in order, while its link is down.
    public var bufferMessages: Int
    /// How long those PUBs are kept before they are dropped (and counted).
    public var bufferTime: TimeAmount
    /// Largest mesh frame accepted or sent; must exceed `[engineio] max_payload` plus
    /// `frameOverhead`, so any client message fits in one PUB.
    public var maxFrame: Int
    /// Cap of the exponential reconnect backoff.
    public var reconnectMax: TimeAmount
    /// `tls = on` and its files; nil when mesh links are plaintext (`tls = off`, the default).
    public var tls: MeshTLSSettings?

    /// Room of a PUB frame beside its payload: header, room id, origin node name, sequence,
    /// length prefixes, with ample margin.
    public static let frameOverhead = 1024

    public init() {
        pingInterval = .milliseconds(1000)
        bufferMessages = 10_000
        bufferTime = .milliseconds(5000)
        maxFrame = 4_194_304
        reconnectMax = .milliseconds(2000)
    }
}

/// One `[node NAME]` section.
public struct NodeEntry: Sendable, Equatable {
    public var name: String
    /// Where Socket.IO clients, the page, /healthz and /metrics are served.
    public var listen: HostPort
    /// Where the other nodes dial this one; `nil` when the node takes no part in a mesh.
    public var mesh: HostPort?
    /// Line of the `[node NAME]` header (0 when built in code).
    public var line: Int
    /// `tls_cert` / `tls_key`: `listen` serves HTTPS and WSS; nil serves plain HTTP.
    public var clientTLS: ClientTLSSettings?

    public init(name: String, listen: HostPort, mesh: HostPort? = nil, line: Int = 0, clientTLS: ClientTLSSettings? = nil) {
        self.name = name
        self.listen = listen
        self.mesh = mesh
        self.line = line
        self.clientTLS = clientTLS
    }
}

/// What a node keeps while Redis is unreachable (`[redis]` section).
public struct RedisBufferSettings: Sendable, Equatable {
    /// Says kept, in order, while the publisher connection is down.
    public var bufferMessages: Int
    /// How long they are kept.
    public var bufferTime: TimeAmount

    public init(bufferMessages: Int = 10_000, bufferTime: TimeAmount = .milliseconds(5_000)) {
        self.bufferMessages = bufferMessages
        self.bufferTime = bufferTime
    }
}
