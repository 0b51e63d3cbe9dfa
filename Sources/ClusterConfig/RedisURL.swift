/// `redis://[user:]password@host[:port][/db]` or `redis://host[:port][/db]`; `rediss://` for TLS.
///
/// `description` hides the password, so a RedisURL can be logged.
public struct RedisURL: Sendable, Equatable, CustomStringConvertible {
    /// `rediss://`: the connection is TLS (see `ClusterConfig.redisTLS`).
    public var tls: Bool
    /// ACL user name (Redis 6+); `nil` authenticates with the password alone.
    public var user: String?
    /// Percent-decoded.
    public var password: String?
    /// IPv4 text, lowercased host name, or IPv6 text without brackets.
    public var host: String
    public var port: Int
    /// Database index 0–15 (SELECT).
    public var db: Int

    public static let defaultPort = 6379

    public init(user: String? = nil, password: String? = nil, host: String, port: Int = RedisURL.defaultPort, db: Int = 0, tls: Bool = false) {
        self.tls = tls
        self.user = user
        self.password = password
        self.host = host
        self.port = port
        self.db = db
    }

    /// `redis://user:***@host:6379/0`; never shows the password.
    public var description: String {
        var s = tls ? "rediss://" : "redis://"
        if let user { s += user + ":" }
        if password != nil { s += "***@" } else if user != nil { s += "@" }
        s += HostPort(host: host, port: port).description
        s += "/\(db)"
        return s
    }

    /// Parses a Redis URL; the failure is a message without a location.
    ///
    /// The credentials end at the last `@`, so a password may contain `@`, `/`, `:` or `#`
    /// unencoded; `%XX` sequences in user and password are decoded.
    public static func parse(_ text: String) -> Result<RedisURL, ConfigValueError> {
        let expected = "expected redis://[user:]password@host[:port][/db]"
        if text.isEmpty { return .failure("empty url; \(expected)") }
        guard let schemeEnd = text.firstRange(of: "://") else {
            return .failure("\(quoted(text)) is not a url; \(expected)")
        }
        let scheme = text[..<schemeEnd.lowerBound].lowercased()
        guard scheme == "redis" || scheme == "rediss" else {
            return .failure("unsupported scheme '\(text[..<schemeEnd.lowerBound])'; \(expected)")
        }
        let rest = text[schemeEnd.upperBound...]
        var user: String?
        var password: String?
        var location = rest
        if let at = rest.lastIndex(of: "@") {
            let userinfo = rest[..<at]
            location = rest[rest.index(after: at)...]
            if userinfo.isEmpty { return .failure("empty credentials before '@'; \(expected)") }
            let rawUser: Substring?
            let rawPassword: Substring
            if let colon = userinfo.firstIndex(of: ":") {
                rawUser = userinfo[..<colon]
                rawPassword = userinfo[userinfo.index(after: colon)...]
            } else {
                rawUser = nil
                rawPassword = userinfo
            }
            if rawPassword.isEmpty { return .failure("empty password before '@'; \(expected)") }
            switch percentDecode(rawPassword) {
            case .success(let p): password = p
            case .failure(let m): return .failure("password: \(m)")
            }
            if let rawUser, !rawUser.isEmpty {
                switch percentDecode(rawUser) {
                case .success(let u): user = u
                case .failure(let m): return .failure("user: \(m)")
                }
            }
        }
        if let bad = location.firstIndex(where: { $0 == "?" || $0 == "#" }) {
            return .failure("unexpected \(quoted(location[bad...])); query parameters and fragments are not supported")
        }
        let hostPort: Substring
        var dbText: Substring?
        if let slash = location.firstIndex(of: "/") {
            hostPort = location[..<slash]
            dbText = location[location.index(after: slash)...]
        } else {
            hostPort = location
        }
        if hostPort.isEmpty { return .failure("missing host; \(expected)") }

        let hostText: Substring
        var portText: Substring?
        if hostPort.hasPrefix("[") {
            guard let close = hostPort.firstIndex(of: "]") else {
                return .failure("missing ']' after the IPv6 address in \(quoted(hostPort))")
            }
            hostText = hostPort[hostPort.index(after: hostPort.startIndex)..<close]
            let after = hostPort[hostPort.index(after: close)...]
            if !after.isEmpty {
                guard after.first == ":" else {
                    return .failure("expected ':port' after ']' in \(quoted(hostPort))")
                }
                portText = after.dropFirst()
            }
            if hostText.isEmpty { return .failure("empty host in \(quoted(hostPort))") }
        } else {
            let colons = hostPort.reduce(0) { $1 == ":" ? $0 + 1 : $0 }
            if colons > 1 {
                return .failure("IPv6 host must be in brackets, e.g. redis://[::1]:6379")
            }
            if let colon = hostPort.firstIndex(of: ":") {
                hostText = hostPort[..<colon]
                portText = hostPort[hostPort.index(after: colon)...]
            } else {
                hostText = hostPort
            }
            if hostText.isEmpty { return .failure("empty host in \(quoted(hostPort)); \(expected)") }
        }
        let host: String
        switch HostAddress.parse(hostText, bracketed: hostPort.hasPrefix("[")) {
        case .success: host = hostText.lowercased()
        case .failure(let m): return .failure(m)
        }
        var port = defaultPort
        if let portText {
            switch parsePort(portText) {
            case .success(let p): port = p
            case .failure(let m): return .failure(m)
            }
        }
        var db = 0
        if let dbText, !dbText.isEmpty {
            guard dbText.utf8.count <= 2, dbText.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
                  let n = Int(dbText), n <= 15 else {
                return .failure("database must be an integer 0-15, got \(quoted(dbText))")
            }
            db = n
        }
        return .success(RedisURL(user: user, password: password, host: host, port: port, db: db, tls: scheme == "rediss"))
    }
}

/// Decodes `%XX` escapes; the result must be valid UTF-8.
func percentDecode(_ s: Substring) -> Result<String, ConfigValueError> {
    guard s.contains("%") else { return .success(String(s)) }
    var out: [UInt8] = []
    let bytes = Array(s.utf8)
    var i = 0
    while i < bytes.count {
        if bytes[i] == 0x25 {
            guard i + 2 < bytes.count, isHexDigit(bytes[i + 1]), isHexDigit(bytes[i + 2]) else {
                return .failure("bad percent-encoding: '%' must be followed by two hex digits")
            }
            out.append(hexValue(bytes[i + 1]) << 4 | hexValue(bytes[i + 2]))
            i += 3
        } else {
            out.append(bytes[i])
            i += 1
        }
    }
    guard let decoded = String(validating: out, as: UTF8.self) else {
        return .failure("percent-encoded bytes are not valid UTF-8")
    }
    return .success(decoded)
}

private func hexValue(_ b: UInt8) -> UInt8 {
    switch b {
    case 0x30...0x39: return b - 0x30
    case 0x41...0x46: return b - 0x41 + 10
    default: return b - 0x61 + 10
    }
}
