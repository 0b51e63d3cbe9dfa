/// An HTTP request aimed at the Engine.IO endpoint, parsed and checked the way the official
/// Node server checks it: transport first, then protocol version. Session lookups (unknown
/// sid, transport mismatch) are the server's business, since they need its session table.
public struct EngineRequest: Equatable, Sendable {
    public enum Transport: String, Sendable {
        case polling, websocket
    }

    public var transport: Transport
    public var sid: String?
    /// Every query parameter, percent-decoded; the first occurrence of a name wins.
    public var query: [String: String]

    public static let defaultPath = "/socket.io/"

    /// Returns nil when `uri` is not under `path` (not an Engine.IO request at all).
    public static func parse(uri: String, path: String = defaultPath) -> Result<EngineRequest, EngineErrorCode>? {
        guard isEngineURI(uri, path: path) else { return nil }
        let queryString = splitURI(uri).query
        let query = QueryString.parse(queryString)
        guard let transportName = query["transport"], let transport = Transport(rawValue: transportName) else {
            return .failure(.unknownTransport)
        }
        guard query["EIO"] == "4" else { return .failure(.unsupportedProtocolVersion) }
        let sid = query["sid"]
        if let sid, sid.isEmpty || sid.utf8.count > 64 { return .failure(.unknownSid) }
        return .success(EngineRequest(transport: transport, sid: sid, query: query))
    }

    /// Whether `uri` is under `path` (with or without its trailing slash), whatever its query.
    public static func isEngineURI(_ uri: String, path: String = defaultPath) -> Bool {
        let requestPath = splitURI(uri).path
        return requestPath == path || requestPath + "/" == path
    }

    static func splitURI(_ uri: String) -> (path: String, query: Substring) {
        guard let mark = uri.firstIndex(of: "?") else { return (uri, "") }
        return (String(uri[..<mark]), uri[uri.index(after: mark)...])
    }
}

/// The error codes and messages of the official Engine.IO server, sent as an HTTP 400 (403 for
/// `forbidden`) with the body `{"code":N,"message":"..."}`.
public enum EngineErrorCode: Int, Error, Sendable, CaseIterable {
    case unknownTransport = 0
    case unknownSid = 1
    case badHandshakeMethod = 2
    case badRequest = 3
    case forbidden = 4
    case unsupportedProtocolVersion = 5

    public var message: String {
        switch self {
        case .unknownTransport: return "Transport unknown"
        case .unknownSid: return "Session ID unknown"
        case .badHandshakeMethod: return "Bad handshake method"
        case .badRequest: return "Bad request"
        case .forbidden: return "Forbidden"
        case .unsupportedProtocolVersion: return "Unsupported protocol version"
        }
    }

    public var httpStatus: Int { self == .forbidden ? 403 : 400 }

    public var jsonBody: String { #"{"code":\#(rawValue),"message":"\#(message)"}"# }
}

/// `application/x-www-form-urlencoded` query parsing: `&`-separated, `+` as space, `%XX`
/// escapes; malformed escapes are kept literally rather than rejected, as browsers do.
public enum QueryString {
    public static func parse(_ query: Substring) -> [String: String] {
        var result: [String: String] = [:]
        for pair in query.split(separator: "&", omittingEmptySubsequences: true) {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let name = decode(parts[0])
            let value = parts.count > 1 ? decode(parts[1]) : ""
            if result[name] == nil { result[name] = value }
        }
        return result
    }

    public static func decode(_ text: Substring) -> String {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(text.utf8.count)
        var iterator = Array(text.utf8)[...]
        while let byte = iterator.popFirst() {
            switch byte {
            case UInt8(ascii: "+"):
                bytes.append(UInt8(ascii: " "))
            case UInt8(ascii: "%"):
                if iterator.count >= 2, let high = hexValue(iterator[iterator.startIndex]),
                   let low = hexValue(iterator[iterator.startIndex + 1]) {
                    bytes.append(high << 4 | low)
                    iterator = iterator.dropFirst(2)
                } else {
                    bytes.append(byte)
                }
            default:
                bytes.append(byte)
            }
        }
        // Invalid UTF-8 becomes U+FFFD, so later checks see a well-formed string.
        return String(decoding: bytes, as: UTF8.self)
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}
