/// One section of cluster.conf and the keys it accepts.
///
/// `ConfigSection.all` is the one list of what cluster.conf may contain: the parser's
/// unknown-section and unknown-key checks read it, and a unit test compares docs/CONFIG.md
/// and README.md with it, so the documentation cannot drift from what the parser accepts.
public struct ConfigSection: Sendable, Equatable {
    /// The header word: `cluster` for `[cluster]`, `node` for every `[node NAME]`.
    public let name: String
    /// Its keys, in the order the documentation lists them.
    public let keys: [String]

    public init(name: String, keys: [String]) {
        self.name = name
        self.keys = keys
    }

    /// `[cluster]` or `[node NAME]`, as messages and the documentation write it.
    public var title: String { name == "node" ? "[node NAME]" : "[\(name)]" }

    /// Every section, in documentation order.
    public static let all: [ConfigSection] = [
        ConfigSection(name: "cluster", keys: ["fanout", "secret", "secret_file", "drain_timeout", "log_level"]),
        ConfigSection(name: "redis", keys: ["url", "channel_prefix", "mode", "buffer_messages", "buffer_ms", "tls_ca", "tls_cert", "tls_key"]),
        ConfigSection(name: "engineio", keys: ["ping_interval", "ping_timeout", "max_payload", "upgrade_timeout", "connect_timeout", "allowed_origins"]),
        ConfigSection(name: "limits", keys: ["username_max", "text_max", "roomid_max", "say_rate", "say_burst", "outbound_buffer", "max_connections", "max_write_delay", "header_timeout", "max_sockets", "fd_reserve"]),
        ConfigSection(name: "mesh", keys: ["ping_interval", "buffer_messages", "buffer_ms", "max_frame", "reconnect_max", "tls", "tls_ca", "tls_cert", "tls_key"]),
        ConfigSection(name: "recovery", keys: ["enabled", "max_disconnection", "room_messages", "history_bytes", "catch_up"]),
        ConfigSection(name: "node", keys: ["listen", "mesh", "tls_cert", "tls_key"]),
    ]

    /// The section whose header word is `name`, if cluster.conf has one.
    public static func named(_ name: String) -> ConfigSection? {
        all.first { $0.name == name }
    }
}
