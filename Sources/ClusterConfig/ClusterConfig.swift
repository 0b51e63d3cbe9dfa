import NIOCore

/// The whole cluster.conf: identical on every host, it lists every node.
public struct ClusterConfig: Sendable, Equatable {
    public var fanout: FanoutKind
    /// Shared mesh key, from `secret` or read from `secret_file`; required when any mesh
    /// address is not loopback.
    public var secret: String?
    /// `[cluster] secret_file`: where `secret` was read from (nil when given inline).
    public var secretFile: String?
    /// Line of `secret` or `secret_file` (0 when neither is set).
    public var secretLine: Int = 0
    /// `[cluster] drain_timeout`: how long a node may take to drain on SIGTERM.
    public var drainTimeout: TimeAmount = .milliseconds(10_000)
    /// `[cluster] log_level`: a lowercase level name of `ClusterConfig.logLevels`; nil leaves
    /// the level to the `--log-level` flag.
    public var logLevel: String?
    /// `[redis] url`; required when `fanout = redis`.
    public var redisURL: RedisURL?
    /// `[redis] mode`, resolved: as set, else `.sharded` for a cluster url and `.classic`
    /// otherwise (`.sharded` always comes with a cluster url).
    public var redisMode: RedisPubSubMode
    /// `[redis] tls_ca` / `tls_cert` / `tls_key`: non-nil exactly when `redisURL` is `rediss://`
    /// (then with every file nil when none is set: the system trust store, no client certificate).
    public var redisTLS: RedisTLSSettings?
    /// Prepended to room ids to form Redis channel names (default empty).
    public var channelPrefix: String
    /// `[redis] buffer_messages` / `buffer_ms`: says kept while Redis is unreachable.
    public var redisBuffer: RedisBufferSettings
    public var engine: EngineSettings
    public var limits: LimitSettings
    public var mesh: MeshSettings
    /// `[recovery]`: connection-state recovery (off unless `enabled = on`).
    public var recovery: RecoverySettings
    /// In file order.
    public var nodes: [NodeEntry]

    public init(
        fanout: FanoutKind = .mesh,
        secret: String? = nil,
        redisURL: RedisURL? = nil,
        channelPrefix: String = "",
        redisBuffer: RedisBufferSettings = RedisBufferSettings(),
        engine: EngineSettings = EngineSettings(),
        limits: LimitSettings = LimitSettings(),
        mesh: MeshSettings = MeshSettings(),
        recovery: RecoverySettings = RecoverySettings(),
        nodes: [NodeEntry] = [],
        redisMode: RedisPubSubMode = .classic,
        logLevel: String? = nil
    ) {
        self.fanout = fanout
        self.secret = secret
        self.redisURL = redisURL
        self.channelPrefix = channelPrefix
        self.redisBuffer = redisBuffer
        self.engine = engine
        self.limits = limits
        self.mesh = mesh
        self.recovery = recovery
        self.nodes = nodes
        self.redisMode = redisMode
        self.logLevel = logLevel
    }

    /// What `[cluster] log_level` accepts: the `--log-level` names, lowest first.
    public static let logLevels = ["trace", "debug", "info", "notice", "warning", "error", "critical"]

    /// Parses cluster.conf text; `file` is only used in error locations.
    /// - Throws: `ConfigError` for the first problem found.
    public static func parse(_ text: String, file: String) throws -> ClusterConfig {
        var parser = ConfigParser(file: file)
        return try parser.parse(text)
    }

    public func node(named name: String) -> NodeEntry? {
        nodes.first { $0.name == name }
    }

    /// Human-readable summary for `chatmesh check-config`. The secret and the Redis
    /// password are never printed.
    public func summary() -> String {
        var lines: [String] = []
        lines.append("fanout: \(fanout.rawValue)")
        lines.append("secret: \(secret == nil ? "not set" : "set")")
        if let secretFile { lines.append("secret_file: \(secretFile)") }
        lines.append("drain_timeout: \(drainTimeout.wholeMilliseconds) ms")
        if let logLevel { lines.append("log_level: \(logLevel)") }
        if let redisURL {
            lines.append("redis: \(redisURL)\(fanout == .redis ? "" : " (unused: fanout = mesh)")")
            if redisURL.cluster {
                lines.append("redis cluster seeds (\(redisURL.seeds.count)): \(redisURL.seeds.map(\.description).joined(separator: ", "))")
                switch redisMode {
                case .sharded: lines.append("redis mode: sharded (SSUBSCRIBE/SPUBLISH: a room's messages stay in its shard)")
                case .classic: lines.append("redis mode: classic (SUBSCRIBE/PUBLISH: the cluster copies every message to every node)")
                }
            }
        } else {
            lines.append("redis: not configured")
        }
        if let redisTLS {
            let client = redisTLS.certFile.map { "cert \($0), key \(redisTLS.keyFile ?? "")" } ?? "no client certificate"
            lines.append("redis tls: ca \(redisTLS.caFile ?? "(system trust store)"), \(client)")
        }
        lines.append("channel_prefix: \"\(channelPrefix)\"")
        lines.append("redis buffer: \(redisBuffer.bufferMessages) messages, \(redisBuffer.bufferTime.wholeMilliseconds) ms")
        lines.append("nodes (\(nodes.count)):")
        let width = nodes.map { $0.name.count }.max() ?? 0
        for node in nodes {
            let pad = String(repeating: " ", count: width - node.name.count)
            var line = "  \(node.name)\(pad)  listen \(node.listen)"
            if let mesh = node.mesh { line += "  mesh \(mesh)" }
            lines.append(line)
            if let tls = node.clientTLS {
                lines.append("  \(String(repeating: " ", count: width))  https: tls_cert \(tls.certFile), tls_key \(tls.keyFile)")
            }
        }
        lines.append("engineio:")
        lines.append("  ping_interval = \(engine.pingInterval.wholeMilliseconds) ms")
        lines.append("  ping_timeout = \(engine.pingTimeout.wholeMilliseconds) ms")
        lines.append("  max_payload = \(engine.maxPayload) bytes")
        lines.append("  upgrade_timeout = \(engine.upgradeTimeout.wholeMilliseconds) ms")
        lines.append("  connect_timeout = \(engine.connectTimeout.wholeMilliseconds) ms")
        lines.append("  allowed_origins = \(engine.allowedOrigins.map { $0.joined(separator: " ") } ?? "* (any origin)")")
        lines.append("limits:")
        lines.append("  username_max = \(limits.usernameMax)")
        lines.append("  text_max = \(limits.textMax)")
        lines.append("  roomid_max = \(limits.roomIDMax)")
        lines.append("  say_rate = \(limits.sayRate) per second")
        lines.append("  say_burst = \(limits.sayBurst)")
        lines.append("  outbound_buffer = \(limits.outboundBuffer) bytes")
        lines.append("  max_connections = \(limits.maxConnections)")
        lines.append("  max_write_delay = \(limits.maxWriteDelay.wholeMilliseconds) ms")
        lines.append("  header_timeout = \(limits.headerTimeout.wholeMilliseconds) ms")
        lines.append("  max_sockets = \(limits.maxSockets == 0 ? "0 (automatic: descriptor limit - fd_reserve)" : String(limits.maxSockets))")
        lines.append("  fd_reserve = \(limits.fdReserve)")
        lines.append("mesh:\(fanout == .mesh ? "" : " (unused: fanout = \(fanout.rawValue))")")
        lines.append("  ping_interval = \(mesh.pingInterval.wholeMilliseconds) ms")
        lines.append("  buffer_messages = \(mesh.bufferMessages)")
        lines.append("  buffer_ms = \(mesh.bufferTime.wholeMilliseconds) ms")
        lines.append("  max_frame = \(mesh.maxFrame) bytes")
        lines.append("  reconnect_max = \(mesh.reconnectMax.wholeMilliseconds) ms")
        if let tls = mesh.tls {
            lines.append("  tls = on")
            lines.append("  tls_ca = \(tls.caFile)")
            lines.append("  tls_cert = \(tls.certFile)")
            lines.append("  tls_key = \(tls.keyFile)")
        } else {
            lines.append("  tls = off")
        }
        lines.append("recovery:")
        lines.append("  enabled = \(recovery.enabled ? "on" : "off")")
        lines.append("  max_disconnection = \(recovery.maxDisconnection.wholeMilliseconds) ms")
        lines.append("  room_messages = \(recovery.roomMessages)")
        lines.append("  history_bytes = \(recovery.historyBytes) bytes")
        lines.append("  catch_up = \(recovery.catchUp.wholeMilliseconds) ms")
        return lines.joined(separator: "\n")
    }
}
