/// A `host:port` pair as written in cluster.conf: an IPv4 dotted quad, a host name
/// (`localhost` included) or an IPv6 address (stored without brackets).
public struct HostPort: Sendable, Hashable, CustomStringConvertible {
    /// IPv4 text, lowercased host name, or lowercased IPv6 text without brackets.
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// True for 127.0.0.0/8, ::1 (also as ::ffff:127.x.y.z) and `localhost`.
    public var isLoopback: Bool { HostAddress.classify(host).isLoopback }

    /// `127.0.0.1:6001`, `example.org:6001` or `[::1]:6001`.
    public var description: String {
        host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }

    /// Parses `host:port` or `[IPv6]:port`; the failure is a message without a location.
    public static func parse(_ text: String) -> Result<HostPort, ConfigValueError> {
        if text.isEmpty { return .failure("empty address; expected host:port, e.g. 127.0.0.1:6001") }
        let hostText: Substring
        let portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else {
                return .failure("missing ']' after the IPv6 address in \(quoted(text)); expected [IPv6]:port, e.g. [::1]:6001")
            }
            hostText = text[text.index(after: text.startIndex)..<close]
            let rest = text[text.index(after: close)...]
            if rest.isEmpty {
                return .failure("missing port in \(quoted(text)); expected [IPv6]:port, e.g. [::1]:6001")
            }
            guard rest.first == ":" else {
                return .failure("expected ':port' after ']' in \(quoted(text)), e.g. [::1]:6001")
            }
            portText = rest.dropFirst()
            if hostText.isEmpty { return .failure("empty host in \(quoted(text))") }
        } else {
            if text.contains("]") {
                return .failure("unbalanced ']' in \(quoted(text)); IPv6 addresses look like [::1]:6001")
            }
            let colons = text.reduce(0) { $1 == ":" ? $0 + 1 : $0 }
            if colons == 0 {
                return .failure("missing port in \(quoted(text)); expected host:port, e.g. 127.0.0.1:6001")
            }
            if colons > 1 {
                return .failure("IPv6 address must be in brackets: \(quoted(text)) should look like [::1]:6001")
            }
            let colon = text.firstIndex(of: ":")!
            hostText = text[..<colon]
            portText = text[text.index(after: colon)...]
            if hostText.isEmpty { return .failure("empty host in \(quoted(text)); expected host:port, e.g. 127.0.0.1:6001") }
        }
        let port: Int
        switch parsePort(portText) {
        case .success(let p): port = p
        case .failure(let message): return .failure(message)
        }
        let bracketed = text.hasPrefix("[")
        switch HostAddress.parse(hostText, bracketed: bracketed) {
        case .success: return .success(HostPort(host: hostText.lowercased(), port: port))
        case .failure(let message): return .failure(message)
        }
    }
}

/// Parses a decimal port 1–65535.
func parsePort(_ text: Substring) -> Result<Int, ConfigValueError> {
    if text.isEmpty { return .failure("missing port number after ':'") }
    guard text.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else {
        return .failure("port \(quoted(text)) is not a number; expected 1-65535")
    }
    // More than 5 digits is out of range whatever they are (and could overflow Int).
    guard text.utf8.count <= 5, let value = Int(text), value >= 1, value <= 65_535 else {
        return .failure("port \(text) is out of range 1-65535")
    }
    return .success(value)
}

/// What a host string denotes; used for validation, loopback detection and for telling
/// whether two addresses would bind the same socket.
enum HostAddress: Equatable {
    case ipv4(UInt32)
    case ipv6([UInt16])
    case name(String)

    /// Best-effort classification of an already validated (or hand-built) host string.
    static func classify(_ host: String) -> HostAddress {
        if host.contains(":"), let groups = parseIPv6(Substring(host)) { return .ipv6(groups) }
        if let v4 = parseIPv4(Substring(host)) { return .ipv4(v4) }
        return .name(host.lowercased())
    }

    /// Validates a host; `bracketed` says it came from `[...]` and must be IPv6.
    static func parse(_ host: Substring, bracketed: Bool) -> Result<HostAddress, ConfigValueError> {
        if host.isEmpty { return .failure("empty host") }
        if bracketed {
            if host.contains("%") {
                return .failure("IPv6 zone ids (%...) are not supported in \(quoted(host))")
            }
            guard let groups = parseIPv6(host) else {
                return .failure("\(quoted(host)) is not a valid IPv6 address")
            }
            return .success(.ipv6(groups))
        }
        if host.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2E }) {
            guard let v4 = parseIPv4(host) else {
                return .failure("\(quoted(host)) is not a valid IPv4 address; expected four numbers 0-255 like 127.0.0.1")
            }
            return .success(.ipv4(v4))
        }
        guard isValidHostName(host) else {
            return .failure("\(quoted(host)) is not a valid host name; use letters, digits, '-' and '.' (labels of 1-63 characters), an IPv4 address, or [IPv6]")
        }
        return .success(.name(host.lowercased()))
    }

    var isLoopback: Bool {
        switch self {
        case .ipv4(let v): return v >> 24 == 127
        case .ipv6(let g):
            if g == [0, 0, 0, 0, 0, 0, 0, 1] { return true }
            if let v4 = mappedIPv4 { return v4 >> 24 == 127 }
            return false
        case .name(let n): return n == "localhost" || n == "localhost."
        }
    }

    /// 0.0.0.0 or :: (bind every interface).
    var isWildcard: Bool {
        switch self {
        case .ipv4(let v): return v == 0
        case .ipv6(let g): return g.allSatisfy { $0 == 0 } || mappedIPv4 == 0
        case .name: return false
        }
    }

    var isLocalhostName: Bool {
        if case .name(let n) = self { return n == "localhost" || n == "localhost." }
        return false
    }

    /// The IPv4 address inside ::ffff:a.b.c.d, if this is one.
    var mappedIPv4: UInt32? {
        guard case .ipv6(let g) = self, g[0...4].allSatisfy({ $0 == 0 }), g[5] == 0xFFFF else { return nil }
        return UInt32(g[6]) << 16 | UInt32(g[7])
    }

    /// Equal keys mean "the same socket address whatever the spelling".
    var bindKey: String {
        if let v4 = mappedIPv4 { return "v4:\(v4)" }
        switch self {
        case .ipv4(let v): return "v4:\(v)"
        case .ipv6(let g): return "v6:" + g.map { String($0, radix: 16) }.joined(separator: ":")
        case .name(let n): return "name:" + (n.hasSuffix(".") ? String(n.dropLast()) : n)
        }
    }
}

/// Strict dotted quad: four decimal numbers 0–255, no leading zeros (inet_aton would read
/// them as octal, so "010" is ambiguous).
func parseIPv4(_ s: Substring) -> UInt32? {
    let parts = s.split(separator: ".", omittingEmptySubsequences: false)
    guard parts.count == 4 else { return nil }
    var value: UInt32 = 0
    for part in parts {
        guard !part.isEmpty, part.utf8.count <= 3,
              part.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
              !(part.utf8.count > 1 && part.utf8.first == 0x30),
              let n = UInt32(part), n <= 255 else { return nil }
        value = value << 8 | n
    }
    return value
}

/// RFC 4291 text form, with optional `::` and an optional trailing dotted quad.
func parseIPv6(_ s: Substring) -> [UInt16]? {
    guard !s.isEmpty, s.utf8.count <= 45 else { return nil }
    func groups(_ part: Substring, ipv4AllowedLast: Bool) -> [UInt16]? {
        if part.isEmpty { return [] }
        let fields = part.split(separator: ":", omittingEmptySubsequences: false)
        var out: [UInt16] = []
        for (i, field) in fields.enumerated() {
            if i == fields.count - 1 && ipv4AllowedLast && field.contains(".") {
                guard let v4 = parseIPv4(field) else { return nil }
                out.append(UInt16(v4 >> 16))
                out.append(UInt16(v4 & 0xFFFF))
                continue
            }
            guard (1...4).contains(field.utf8.count), let n = UInt16(field, radix: 16),
                  field.utf8.allSatisfy({ isHexDigit($0) }) else { return nil }
            out.append(n)
        }
        return out
    }
    if let range = s.firstRange(of: "::") {
        let head = s[..<range.lowerBound]
        let tail = s[range.upperBound...]
        if tail.contains("::") { return nil }
        guard let h = groups(head, ipv4AllowedLast: false),
              let t = groups(tail, ipv4AllowedLast: true),
              h.count + t.count <= 7 else { return nil }
        return h + Array(repeating: 0, count: 8 - h.count - t.count) + t
    }
    guard let all = groups(s, ipv4AllowedLast: true), all.count == 8 else { return nil }
    return all
}

func isHexDigit(_ b: UInt8) -> Bool {
    (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x46) || (b >= 0x61 && b <= 0x66)
}

/// RFC 1123 host name: dot-separated labels of 1–63 letters, digits and hyphens, not
/// starting or ending with a hyphen; at most 253 characters; one trailing dot allowed.
func isValidHostName(_ s: Substring) -> Bool {
    var name = s
    if name.hasSuffix(".") { name = name.dropLast() }
    guard !name.isEmpty, name.utf8.count <= 253 else { return false }
    for label in name.split(separator: ".", omittingEmptySubsequences: false) {
        let bytes = label.utf8
        guard (1...63).contains(bytes.count), bytes.first != 0x2D, bytes.last != 0x2D else { return false }
        for b in bytes {
            let ok = (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || b == 0x2D
            if !ok { return false }
        }
    }
    return true
}

/// `'text'`, shortened so a fuzzed or binary line cannot flood an error message.
func quoted<S: StringProtocol>(_ s: S) -> String {
    let limit = 80
    if s.count <= limit { return "'\(s)'" }
    return "'\(s.prefix(limit))...'"
}
