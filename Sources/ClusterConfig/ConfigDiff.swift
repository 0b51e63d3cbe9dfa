import NIOCore

/// What reloading cluster.conf from `old` to `new` changes, key by key, and which of those
/// changes a running node can take live (`chatmesh check-config --diff`, SIGHUP).
///
/// The classification of each key, and why, is below in `rules` and in docs/CONFIG.md
/// "What a reload changes". In short: what a node only *reads* while it runs (limits, timings,
/// buffer sizes, the peer set and the peers' addresses) changes live; what it *bound or built at
/// start* (its own sockets, TLS contexts, the fanout path, the Redis connection) or what every
/// node must switch at the same instant (the secret, TLS on the mesh, the recovery wire)
/// needs a restart, and a reload keeps the old value (`appliedConfig`).
public struct ConfigDiff: Sendable, Equatable, CustomStringConvertible {
    /// The node whose point of view the diff takes, or nil for the whole cluster's.
    ///
    /// With a local node, a change to another node's `[node NAME]` keys is live (this node just
    /// dials or relays to the new address); with none, each such change needs a restart on the
    /// node it belongs to, which must rebind.
    public let localNode: String?
    /// Sorted by the section order of `ConfigSection.all`, then by the key order of the section
    /// (`[node NAME]` changes by node name, then key).
    public let changes: [ConfigChange]
    /// The config a reloading `localNode` runs: `new`, except that every `.needsRestart` setting
    /// keeps its `old` value, and so does the local node's own entry (kept even when `new`
    /// removes it; with no local node, every `[node NAME]` entry is `new`'s). It is not
    /// re-validated: a value kept from `old` may disagree with a rule between keys of `new` (for
    /// example a kept `fanout = mesh` beside a node that `new` gives no mesh address, or the
    /// local node's kept address reused by another node in `new`).
    public let appliedConfig: ClusterConfig

    public init(old: ClusterConfig, new: ClusterConfig, localNode: String?) {
        self.localNode = localNode
        var changes: [ConfigChange] = []
        var applied = new
        for section in ConfigSection.all where section.name != "node" {
            for key in section.keys {
                // A key without a rule is caught by a unit test (every key of ConfigSection.all
                // must have one), not here: a running node must not crash on it.
                guard let rule = Self.rules.first(where: { $0.section == section.name && $0.key == key }) else { continue }
                guard let change = rule.change(old: old, new: new) else { continue }
                changes.append(change)
                if case .restartEveryNode(_, let keepOld) = rule.effect { keepOld(&applied, old) }
            }
        }
        changes += Self.nodeChanges(old: old, new: new, localNode: localNode)
        if let localNode, let kept = old.node(named: localNode) {
            // Its own addresses and TLS files are bound at start: they stay until a restart.
            if let index = applied.nodes.firstIndex(where: { $0.name == localNode }) {
                applied.nodes[index] = kept
            } else {
                applied.nodes.append(kept)
            }
        }
        self.changes = changes
        self.appliedConfig = applied
    }

    public var isEmpty: Bool { changes.isEmpty }

    /// The changes a reload applies.
    public var liveChanges: [ConfigChange] { changes.filter { $0.classification == .live } }

    /// The changes a reload reports and leaves as they were.
    public var restartChanges: [ConfigChange] { changes.filter { $0.classification == .needsRestart } }

    /// One line per change, or "no changes".
    public var description: String {
        changes.isEmpty ? "no changes" : changes.map(\.description).joined(separator: "\n")
    }

    // MARK: [node NAME]

    static func nodeChanges(old: ClusterConfig, new: ClusterConfig, localNode: String?) -> [ConfigChange] {
        let names = Set(old.nodes.map(\.name)).union(new.nodes.map(\.name)).sorted()
        var changes: [ConfigChange] = []
        for name in names {
            let isLocal = name == localNode
            switch (old.node(named: name), new.node(named: name)) {
            case (nil, let added?):
                // Peers learn of it from the file and dial it; the node itself is not running
                // from the old file, so for it the "reload" is its first start.
                changes.append(ConfigChange(
                    subject: .nodeAdded, section: "node", node: name, oldValue: nil, newValue: added.listen.description,
                    classification: isLocal ? .needsRestart : .live, restartOn: isLocal ? name : nil,
                    note: isLocal ? "it is new; start it" : "peers dial it"))
            case (_?, nil):
                // Peers close its links with GOODBYE and drop its interest table; the node itself
                // cannot leave a cluster by reloading, it must be stopped.
                changes.append(ConfigChange(
                    subject: .nodeRemoved, section: "node", node: name, oldValue: old.node(named: name)?.listen.description, newValue: nil,
                    classification: isLocal ? .needsRestart : .live, restartOn: isLocal ? name : nil,
                    note: isLocal ? "it leaves the cluster; stop it" : "peers close its links"))
            case (let before?, let after?):
                // A node's own listen / mesh sockets and its HTTPS certificate are bound at start,
                // so they need that node's restart; every other node only reads them (to dial
                // or relay to it), which it does live.
                let restart = localNode == nil || isLocal
                for key in ConfigSection.named("node")?.keys ?? [] {
                    let was = nodeValue(key, of: before)
                    let now = nodeValue(key, of: after)
                    guard was != now else { continue }
                    changes.append(ConfigChange(
                        subject: .setting, section: "node", node: name, key: key, oldValue: was, newValue: now,
                        classification: restart ? .needsRestart : .live, restartOn: restart ? name : nil))
                }
            case (nil, nil):
                break
            }
        }
        return changes
    }

    static func nodeValue(_ key: String, of node: NodeEntry) -> String {
        switch key {
        case "listen": return node.listen.description
        case "mesh": return node.mesh?.description ?? "none"
        case "tls_cert": return node.clientTLS?.certFile ?? "none"
        case "tls_key": return node.clientTLS?.keyFile ?? "none"
        default: return "?"  // a new [node] key without a case here: the unit test names it
        }
    }

    // MARK: the other sections

    /// How a key outside `[node NAME]` is shown, compared and applied.
    struct KeyRule: Sendable {
        enum Effect: Sendable {
            /// Applied by a reload.
            case live
            /// Every node reads it at start, or all must switch together; `keepOld` puts the
            /// old value (and its companions) back into the config a reload applies.
            case restartEveryNode(note: String?, keepOld: @Sendable (inout ClusterConfig, ClusterConfig) -> Void)
        }

        let section: String
        let key: String
        /// As cluster.conf spells it; never a secret or a password.
        let text: @Sendable (ClusterConfig) -> String
        /// Compares what `text` hides, for a key that hides something; nil compares the text.
        var same: (@Sendable (ClusterConfig, ClusterConfig) -> Bool)? = nil
        /// Shown after the new value when only the hidden part changed.
        var hiddenChange: String? = nil
        let effect: Effect
        /// With `.live`: a few words on what takes the new value, when it is not everything
        /// at once (`live: new sessions; ...`).
        var liveNote: String? = nil

        func change(old: ClusterConfig, new: ClusterConfig) -> ConfigChange? {
            let was = text(old)
            var now = text(new)
            let unchanged = same.map { $0(old, new) } ?? (was == now)
            guard !unchanged else { return nil }
            if was == now, let hiddenChange { now += " (\(hiddenChange))" }
            switch effect {
            case .live:
                return ConfigChange(subject: .setting, section: section, key: key, oldValue: was, newValue: now, classification: .live, note: liveNote)
            case .restartEveryNode(let note, _):
                return ConfigChange(subject: .setting, section: section, key: key, oldValue: was, newValue: now,
                                    classification: .needsRestart, restartOn: "every node", note: note)
            }
        }
    }

    static func live(_ section: String, _ key: String, note: String? = nil, _ text: @escaping @Sendable (ClusterConfig) -> String) -> KeyRule {
        KeyRule(section: section, key: key, text: text, effect: .live, liveNote: note)
    }

    /// A key a running node read into its sessions, sockets or stores at start and a reload does
    /// not swap: reported, kept at its old value, applied by restarting each node (in any
    /// order: nodes with different values still work together).
    static func atStart(_ section: String, _ key: String, note: String, keepOld: @escaping @Sendable (inout ClusterConfig, ClusterConfig) -> Void,
                        _ text: @escaping @Sendable (ClusterConfig) -> String) -> KeyRule {
        KeyRule(section: section, key: key, text: text, effect: .restartEveryNode(note: note, keepOld: keepOld))
    }

    /// New sessions take it; a connected one keeps what its handshake announced, since its
    /// client times its own side of the heartbeat by those numbers.
    static let newSessions = "new sessions; connected ones keep what their handshake said"


    static func milliseconds(_ time: TimeAmount) -> String { String(time.wholeMilliseconds) }

    /// The secret alone: `secret_file` (where it was read from) is live, so it takes the new path.
    static let keepOldSecret: @Sendable (inout ClusterConfig, ClusterConfig) -> Void = { config, old in
        config.secret = old.secret
    }
    static let keepOldRedisConnection: @Sendable (inout ClusterConfig, ClusterConfig) -> Void = { config, old in
        config.redisURL = old.redisURL
        config.redisTLS = old.redisTLS
    }
    static let keepOldMeshTLS: @Sendable (inout ClusterConfig, ClusterConfig) -> Void = { config, old in
        config.mesh.tls = old.mesh.tls
    }

    /// Every key outside `[node NAME]`. Why each is live or not:
    static let rules: [KeyRule] = [
        // [cluster]
        // fanout picks the whole message path (mesh links or a Redis connection) at start;
        // nodes on different paths do not hear each other, so every node switches.
        KeyRule(section: "cluster", key: "fanout", text: { $0.fanout.rawValue },
                effect: .restartEveryNode(note: "nodes on different fanouts do not hear each other", keepOld: { $0.fanout = $1.fanout })),
        // The secret keys the HMAC of every mesh handshake, and a node holds one: a node that
        // took a new secret live would be refused by every peer still on the old one at the
        // next redial, while its open links stay on the old key and hide the mismatch. So a
        // reload keeps the old secret, and the operator restarts every node with the new one.
        KeyRule(section: "cluster", key: "secret", text: { $0.secret == nil ? "not set" : "set" },
                same: { $0.secret == $1.secret }, hiddenChange: "another secret",
                effect: .restartEveryNode(note: "both ends of a link must hold the same secret; switch all nodes together", keepOld: keepOldSecret)),
        // Only where the secret is read from; what it holds is compared as `secret` above.
        live("cluster", "secret_file") { $0.secretFile ?? "none" },
        // Read when SIGTERM arrives.
        live("cluster", "drain_timeout") { milliseconds($0.drainTimeout) },
        // The node's log handlers read the level from one shared box on every message.
        live("cluster", "log_level") { $0.logLevel ?? "none (the --log-level flag)" },

        // [redis]
        // The Redis connection (address, credentials, TLS) is made at start, and nodes on
        // different servers or channel names do not share rooms.
        KeyRule(section: "redis", key: "url", text: { $0.redisURL?.description ?? "none" },
                same: { $0.redisURL == $1.redisURL }, hiddenChange: "another password",
                effect: .restartEveryNode(note: "all nodes must use the same Redis", keepOld: keepOldRedisConnection)),
        // A node on SSUBSCRIBE and one on SUBSCRIBE do not hear each other's rooms.
        KeyRule(section: "redis", key: "mode", text: { $0.redisMode.rawValue },
                effect: .restartEveryNode(note: "all nodes must use the same pub/sub mode", keepOld: { $0.redisMode = $1.redisMode })),
        KeyRule(section: "redis", key: "channel_prefix", text: { "\"\($0.channelPrefix)\"" },
                effect: .restartEveryNode(note: "only nodes with the same prefix share rooms", keepOld: { $0.channelPrefix = $1.channelPrefix })),
        // The Redis fanout takes new bounds on its loop; what it holds beyond them is dropped
        // as if the bound had been passed.
        live("redis", "buffer_messages") { String($0.redisBuffer.bufferMessages) },
        live("redis", "buffer_ms") { milliseconds($0.redisBuffer.bufferTime) },
        KeyRule(section: "redis", key: "tls_ca", text: { $0.redisTLS?.caFile ?? "none" },
                effect: .restartEveryNode(note: nil, keepOld: keepOldRedisConnection)),
        KeyRule(section: "redis", key: "tls_cert", text: { $0.redisTLS?.certFile ?? "none" },
                effect: .restartEveryNode(note: nil, keepOld: keepOldRedisConnection)),
        KeyRule(section: "redis", key: "tls_key", text: { $0.redisTLS?.keyFile ?? "none" },
                effect: .restartEveryNode(note: nil, keepOld: keepOldRedisConnection)),

        // [engineio] and [limits]: the node's live settings (ServerContext) are read when a
        // session opens, a request or upgrade arrives, a socket is accepted, a timer is set; the
        // chat limits on each join and say. So new values reach new sessions at once, and
        // connected ones as far as it is safe (see the notes and docs/CONFIG.md).
        live("engineio", "ping_interval", note: newSessions) { milliseconds($0.engine.pingInterval) },
        live("engineio", "ping_timeout", note: newSessions) { milliseconds($0.engine.pingTimeout) },
        live("engineio", "max_payload") { String($0.engine.maxPayload) },
        live("engineio", "upgrade_timeout") { milliseconds($0.engine.upgradeTimeout) },
        live("engineio", "connect_timeout") { milliseconds($0.engine.connectTimeout) },
        live("engineio", "allowed_origins") { $0.engine.allowedOrigins?.joined(separator: " ") ?? "*" },
        live("limits", "username_max") { String($0.limits.usernameMax) },
        live("limits", "text_max") { String($0.limits.textMax) },
        live("limits", "roomid_max") { String($0.limits.roomIDMax) },
        live("limits", "say_rate") { String($0.limits.sayRate) },
        live("limits", "say_burst") { String($0.limits.sayBurst) },
        live("limits", "outbound_buffer") { String($0.limits.outboundBuffer) },
        live("limits", "max_connections") { String($0.limits.maxConnections) },
        // Each loop's room shard takes it on its own loop (RoomHub.setMaxWriteDelay).
        live("limits", "max_write_delay") { milliseconds($0.limits.maxWriteDelay) },
        live("limits", "header_timeout") { milliseconds($0.limits.headerTimeout) },
        live("limits", "max_sockets") { String($0.limits.maxSockets) },
        live("limits", "fd_reserve") { String($0.limits.fdReserve) },

        // [mesh]: timers, buffer bounds and the frame cap are read per link event. (A larger
        // max_frame must reach every node before a larger max_payload does: docs/CONFIG.md.)
        live("mesh", "ping_interval") { milliseconds($0.mesh.pingInterval) },
        live("mesh", "buffer_messages") { String($0.mesh.bufferMessages) },
        live("mesh", "buffer_ms") { milliseconds($0.mesh.bufferTime) },
        live("mesh", "max_frame") { String($0.mesh.maxFrame) },
        live("mesh", "reconnect_max") { milliseconds($0.mesh.reconnectMax) },
        // A TLS node and a plaintext node cannot link, and the TLS context (CA, this node's
        // certificate and key) is built at start.
        KeyRule(section: "mesh", key: "tls", text: { $0.mesh.tls == nil ? "off" : "on" },
                effect: .restartEveryNode(note: "a TLS node and a plaintext node cannot link", keepOld: keepOldMeshTLS)),
        KeyRule(section: "mesh", key: "tls_ca", text: { $0.mesh.tls?.caFile ?? "none" },
                effect: .restartEveryNode(note: nil, keepOld: keepOldMeshTLS)),
        KeyRule(section: "mesh", key: "tls_cert", text: { $0.mesh.tls?.certFile ?? "none" },
                effect: .restartEveryNode(note: nil, keepOld: keepOldMeshTLS)),
        KeyRule(section: "mesh", key: "tls_key", text: { $0.mesh.tls?.keyFile ?? "none" },
                effect: .restartEveryNode(note: nil, keepOld: keepOldMeshTLS)),

        // [recovery]: `enabled` changes what clients see on the wire (a pid, an offset on every
        // broadcast) and whether nodes keep history to recover from; the bounds are read when
        // a message is kept or a session is held.
        KeyRule(section: "recovery", key: "enabled", text: { $0.recovery.enabled ? "on" : "off" },
                effect: .restartEveryNode(note: "it changes what every client receives", keepOld: { $0.recovery.enabled = $1.recovery.enabled })),
        // The bounds are the store's policy, swapped on its loop: a smaller bound evicts at once.
        live("recovery", "max_disconnection") { milliseconds($0.recovery.maxDisconnection) },
        live("recovery", "room_messages") { String($0.recovery.roomMessages) },
        live("recovery", "history_bytes") { String($0.recovery.historyBytes) },
        live("recovery", "catch_up") { milliseconds($0.recovery.catchUp) },
    ]
}
