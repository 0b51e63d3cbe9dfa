/// `redis://[user:]password@host[:port][/db]` or `redis://host[:port][/db]`; `rediss://` for TLS.
/// A Redis Cluster is `redis+cluster://[user:]password@host:port[,host:port...]` (seed nodes;
/// `rediss+cluster://` for TLS): the rest of the cluster is learned from the seeds.
///
/// `description` hides the password, so a RedisURL can be logged.
public struct RedisURL: Sendable, Equatable, CustomStringConvertible {
    /// `rediss://` or `rediss+cluster://`: the connections are TLS (see `ClusterConfig.redisTLS`).
    public var tls: Bool
    /// `redis+cluster://` or `rediss+cluster://`: `seeds` are nodes of a Redis Cluster.
    public var cluster: Bool
    /// ACL user name (Redis 6+); `nil` authenticates with the password alone.
    public var user: String?
    /// Percent-decoded.
    public var password: String?
    /// Where to connect first, in url order, without duplicates: the one server of a
    /// single-node url, or the seed nodes of a cluster url. Never empty in a parsed url.
    public var seeds: [HostPort]
    /// Database index 0–15 (SELECT); always 0 on a cluster, which has no other.
    public var db: Int

    public static let defaultPort = 6379
    /// A seed list is a few nodes per shard; the rest comes from the cluster's own topology.
    public static let maxSeeds = 64

    /// A single-node url.
    public init(user: String? = nil, password: String? = nil, host: String, port: Int = RedisURL.defaultPort, db: Int = 0, tls: Bool = false) {
        self.init(user: user, password: password, seeds: [HostPort(host: host, port: port)], db: db, tls: tls, cluster: false)
    }

    /// A cluster url (`cluster: true`), or with one seed and `cluster: false`, a single-node url.
    public init(user: String? = nil, password: String? = nil, seeds: [HostPort], db: Int = 0, tls: Bool = false, cluster: Bool) {
        self.tls = tls
        self.cluster = cluster
        self.user = user
        self.password = password
        self.seeds = seeds
        self.db = db
    }

    /// The first seed's host: for a single-node url, the server. IPv4 text, lowercased host
    /// name, or IPv6 text without brackets.
    public var host: String {
        get { seeds.first?.host ?? "" }
        set {
            if seeds.isEmpty { seeds = [HostPort(host: newValue, port: Self.defaultPort)] } else { seeds[0].host = newValue }
        }
    }

    /// The first seed's port.
    public var port: Int {
        get { seeds.first?.port ?? Self.defaultPort }
        set {
            if seeds.isEmpty { seeds = [HostPort(host: "", port: newValue)] } else { seeds[0].port = newValue }
        }
    }

    /// `redis`, `rediss`, `redis+cluster` or `rediss+cluster`, as the url starts.
    public var scheme: String { (tls ? "rediss" : "redis") + (cluster ? "+cluster" : "") }

    /// `redis://user:***@host:6379/0` or `redis+cluster://***@10.0.0.1:7000,10.0.0.2:7000`;
    /// never shows the password.
    public var description: String {
        var s = scheme + "://"
        if let user { s += user + ":" }
        if password != nil { s += "***@" } else if user != nil { s += "@" }
        if cluster {
            s += seeds.map(\.description).joined(separator: ",")
        } else {
            s += HostPort(host: host, port: port).description
            s += "/\(db)"
        }
        return s
    }

    static let expected = "expected redis://[user:]password@host[:port][/db]"
    static let expectedCluster = "expected redis+cluster://[user:]password@host:port[,host:port...]"

    /// Parses a Redis URL; the failure is a message without a location.
    ///
    /// The credentials end at the last `@`, so a password may contain `@`, `/`, `:`, `,` or
    /// `#` unencoded; `%XX` sequences in user and password are decoded.
    public static func parse(_ text: String) -> Result<RedisURL, ConfigValueError> {
        if text.isEmpty { return .failure("empty url; \(expected)") }
        guard let schemeEnd = text.firstRange(of: "://") else {
            return .failure("\(quoted(text)) is not a url; \(expected)")
        }
        let schemeText = text[..<schemeEnd.lowerBound]
        let scheme = schemeText.lowercased()
        let tls: Bool
        let cluster: Bool
        switch scheme {
        case "redis": (tls, cluster) = (false, false)
        case "rediss": (tls, cluster) = (true, false)
        case "redis+cluster": (tls, cluster) = (false, true)
        case "rediss+cluster": (tls, cluster) = (true, true)
        default:
            // A near miss of the cluster scheme (redis-cluster, cluster) gets the cluster form.
            let hint = scheme.contains("cluster") ? expectedCluster + " (rediss+cluster:// for TLS)" : expected
            return .failure("unsupported scheme \(quoted(schemeText)); \(hint)")
        }
        let expected = cluster ? expectedCluster : expected
        let rest = text[schemeEnd.upperBound...]
        // `redis+cluster://a:7000,redis://b:7001`: the scheme is written once, before the
        // first seed. Without this check the last '@' rule could turn the text between two
        // schemes into a password.
        if let second = secondScheme(in: rest) {
            return .failure("a url has one scheme, written once before the first seed; found \(quoted(second)) after a ','; \(expectedCluster)")
        }
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
        let hostList: Substring
        var dbText: Substring?
        if let slash = location.firstIndex(of: "/") {
            hostList = location[..<slash]
            dbText = location[location.index(after: slash)...]
        } else {
            hostList = location
        }
        if hostList.isEmpty { return .failure("missing host; \(expected)") }

        var seeds: [HostPort] = []
        if cluster {
            let count = hostList.utf8.count(where: { $0 == 0x2C }) + 1
            if count > maxSeeds {
                return .failure("too many seeds: \(count), at most \(maxSeeds); a few nodes per shard are enough, the cluster names the rest")
            }
            let items = hostList.split(separator: ",", omittingEmptySubsequences: false)
            var firstByKey: [String: Int] = [:]
            for (index, item) in items.enumerated() {
                if item.isEmpty {
                    return .failure("seed \(index + 1) of \(quoted(hostList)) is empty; seeds are host:port separated by single commas")
                }
                if item.contains(where: { $0 == " " || $0 == "\t" }) {
                    return .failure("seed \(quoted(item)) contains a space; separate seeds with commas alone, e.g. h1:7000,h2:7000")
                }
                let seed: HostPort
                switch parseHostPort(item, ipv6Example: "redis+cluster://[::1]:7000", expected: expected) {
                case .success(let hp): seed = hp
                case .failure(let m): return .failure("seed \(quoted(item)): \(m)")
                }
                let key = "\(HostAddress.classify(seed.host).bindKey)|\(seed.port)"
                if let first = firstByKey[key] {
                    return .failure("duplicate seed \(quoted(item)): the same address as seed \(first + 1), \(seeds[first]); list each node once")
                }
                firstByKey[key] = index
                seeds.append(seed)
            }
        } else {
            if hostList.contains(",") {
                return .failure("several hosts in \(quoted(hostList)) need a cluster url: \(expectedCluster)")
            }
            switch parseHostPort(hostList, ipv6Example: "redis://[::1]:6379", expected: expected) {
            case .success(let hp): seeds = [hp]
            case .failure(let m): return .failure(m)
            }
        }
        var db = 0
        if let dbText, !dbText.isEmpty {
            guard dbText.utf8.count <= 2, dbText.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
                  let n = Int(dbText), n <= 15, !cluster || n == 0 else {
                if cluster {
                    return .failure("a Redis Cluster has only database 0, got \(quoted("/" + dbText)); remove it from the url")
                }
                return .failure("database must be an integer 0-15, got \(quoted(dbText))")
            }
            db = n
        }
        return .success(RedisURL(user: user, password: password, seeds: seeds, db: db, tls: tls, cluster: cluster))
    }

    /// `host`, `host:port`, `[IPv6]` or `[IPv6]:port`; the port defaults to 6379.
    private static func parseHostPort(_ hostPort: Substring, ipv6Example: String, expected: String) -> Result<HostPort, ConfigValueError> {
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
                return .failure("IPv6 host must be in brackets, e.g. \(ipv6Example)")
            }
            if let colon = hostPort.firstIndex(of: ":") {
                hostText = hostPort[..<colon]
                portText = hostPort[hostPort.index(after: colon)...]
            } else {
                hostText = hostPort
            }
            if hostText.isEmpty { return .failure("empty host in \(quoted(hostPort)); \(expected)") }
        }
        if case .failure(let m) = HostAddress.parse(hostText, bracketed: hostPort.hasPrefix("[")) {
            return .failure(m)
        }
        var port = defaultPort
        if let portText {
            switch parsePort(portText) {
            case .success(let p): port = p
            case .failure(let m): return .failure(m)
            }
        }
        return .success(HostPort(host: hostText.lowercased(), port: port))
    }

    /// The first `redis://`, `rediss://`, `redis+cluster://` or `rediss+cluster://` right after
    /// a ',' in `text` (any case), as written; nil when there is none. Compares bytes after
    /// each comma in place, so a line of a million commas costs a few million byte reads.
    private static func secondScheme(in text: Substring) -> Substring? {
        let schemes = ["redis://", "rediss://", "redis+cluster://", "rediss+cluster://"].map { Array($0.utf8) }
        let bytes = text.utf8
        var index = bytes.startIndex
        while let comma = bytes[index...].firstIndex(of: 0x2C) {
            index = bytes.index(after: comma)
            for scheme in schemes {
                var i = index
                var matched = 0
                while matched < scheme.count, i < bytes.endIndex, asciiLowercased(bytes[i]) == scheme[matched] {
                    matched += 1
                    i = bytes.index(after: i)
                }
                if matched == scheme.count { return text[index..<i] }
            }
        }
        return nil
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

private func asciiLowercased(_ b: UInt8) -> UInt8 {
    b >= 0x41 && b <= 0x5A ? b | 0x20 : b
}

private func hexValue(_ b: UInt8) -> UInt8 {
    switch b {
    case 0x30...0x39: return b - 0x30
    case 0x41...0x46: return b - 0x41 + 10
    default: return b - 0x61 + 10
    }
}
