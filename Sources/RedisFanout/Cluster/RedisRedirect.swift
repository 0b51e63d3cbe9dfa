import ClusterConfig

/// A `-MOVED` or `-ASK` error reply of a Redis Cluster node: the slot and the node to ask
/// instead.
public struct RedisRedirect: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        /// The slot now lives at `address`: re-read the topology.
        case moved
        /// The slot is migrating to `address`: `ASKING` there, then the command, once.
        case ask
    }

    public var kind: Kind
    public var slot: Int
    public var address: HostPort

    public init(kind: Kind, slot: Int, address: HostPort) {
        self.kind = kind
        self.slot = slot
        self.address = address
    }

    /// Parses `MOVED 3999 127.0.0.1:6381` or `ASK 3999 127.0.0.1:6381` (an error reply's text,
    /// without the '-'); nil for any other text, or one whose slot or address is not valid.
    ///
    /// Redis writes the address as `endpoint:port` with an IPv6 endpoint unbracketed
    /// (`MOVED 1 ::1:6381`), so the port follows the last ':'; `[::1]:6381` is read as well.
    /// An empty endpoint (`:6381`, Redis's "unknown endpoint") or `?` (a node without the
    /// announced hostname asked for) means the host of the connection the reply came on:
    /// `connectionHost`.
    public static func parse(_ errorText: String, connectionHost: String) -> RedisRedirect? {
        let words = errorText.split(separator: " ", omittingEmptySubsequences: false)
        guard words.count == 3 else { return nil }
        let kind: Kind
        switch words[0] {
        case "MOVED": kind = .moved
        case "ASK": kind = .ask
        default: return nil
        }
        guard let slot = slotNumber(words[1]),
              let address = endpoint(words[2], connectionHost: connectionHost) else { return nil }
        return RedisRedirect(kind: kind, slot: slot, address: address)
    }

    /// Decimal 0-16383, digits only.
    private static func slotNumber(_ text: Substring) -> Int? {
        guard (1...5).contains(text.utf8.count), text.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
              let slot = Int(text), slot < RedisHashSlot.count else { return nil }
        return slot
    }

    private static func endpoint(_ text: Substring, connectionHost: String) -> HostPort? {
        guard let colon = text.lastIndex(of: ":") else { return nil }
        let host = text[..<colon]
        let port = text[text.index(after: colon)...]
        let resolvedHost: String
        if host.hasPrefix("[") {
            // Bracketed: an IPv6 address, never the "same host" shorthand.
            guard host.hasSuffix("]"), host.count > 2 else { return nil }
            resolvedHost = String(host.dropFirst().dropLast())
            guard resolvedHost.contains(":") else { return nil }
        } else {
            resolvedHost = host.isEmpty || host == "?" ? connectionHost : String(host)
        }
        return try? RedisNodeAddress.make(host: resolvedHost, port: port).get()
    }
}
