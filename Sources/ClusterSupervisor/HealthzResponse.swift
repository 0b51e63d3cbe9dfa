import SocketIO

/// What the supervisor needs from a node's `GET /healthz` answer.
public struct HealthzReport: Equatable, Sendable {
    /// The `node` field, when present.
    public var node: String?
    public var connections: Int

    public init(node: String?, connections: Int) {
        self.node = node
        self.connections = connections
    }
}

public struct HealthzError: Error, Equatable, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// Parses a whole HTTP/1.1 response to `GET /healthz` (read until the server closed, as
/// the request says `Connection: close`): status 200 and a JSON object body with a
/// non-negative integer `connections`. Content-Length, chunked, and close-delimited
/// bodies are understood.
public enum HealthzResponse {
    /// Larger answers are not /healthz; the reader stops there.
    public static let maxSize = 64 * 1024

    public static func parse(_ bytes: [UInt8]) -> Result<HealthzReport, HealthzError> {
        guard let headerEnd = find([0x0D, 0x0A, 0x0D, 0x0A], in: bytes[...]) else {
            return .failure(HealthzError(bytes.isEmpty ? "empty response" : "incomplete HTTP header"))
        }
        let head = String(decoding: bytes[..<headerEnd], as: UTF8.self)
        let lines = head.split(separator: "\r\n", omittingEmptySubsequences: false)
        let statusParts = lines[0].split(separator: " ", maxSplits: 2)
        guard statusParts.count >= 2, statusParts[0].hasPrefix("HTTP/1."), let status = Int(statusParts[1]) else {
            return .failure(HealthzError("not an HTTP/1.x status line: \(String(lines[0].prefix(80)))"))
        }
        guard status == 200 else { return .failure(HealthzError("HTTP status \(status)")) }

        var contentLength: Int?
        var chunked = false
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let name = line[..<colon].lowercased()
            let value = line[line.index(after: colon)...].trimmingBlanks()
            if name == "content-length" {
                guard let n = Int(value), n >= 0 else { return .failure(HealthzError("bad Content-Length '\(value.prefix(40))'")) }
                contentLength = n
            } else if name == "transfer-encoding" {
                chunked = value.lowercased().contains("chunked")
            }
        }

        var body = bytes[(headerEnd + 4)...]
        if chunked {
            switch dechunk(body) {
            case .success(let b): body = b[...]
            case .failure(let e): return .failure(e)
            }
        } else if let contentLength {
            guard body.count >= contentLength else {
                return .failure(HealthzError("body shorter than Content-Length (\(body.count) of \(contentLength) bytes)"))
            }
            body = body.prefix(contentLength)
        }
        return parseBody(body)
    }

    /// The JSON object of a healthy node.
    public static func parseBody(_ body: ArraySlice<UInt8>) -> Result<HealthzReport, HealthzError> {
        guard let text = String(validating: body, as: UTF8.self) else {
            return .failure(HealthzError("body is not UTF-8"))
        }
        let json: JSONValue
        do {
            json = try JSONParser.parse(Substring(text))
        } catch {
            return .failure(HealthzError("body is not JSON: \(error)"))
        }
        guard json.isObject else { return .failure(HealthzError("body is not a JSON object")) }
        guard case .number(let value)? = json["connections"] else {
            return .failure(HealthzError("no numeric 'connections' field"))
        }
        guard value >= 0, value == value.rounded(), value < 1e15 else {
            return .failure(HealthzError("'connections' is not a count: \(value)"))
        }
        return .success(HealthzReport(node: json["node"]?.stringValue, connections: Int(value)))
    }

    private static func dechunk(_ data: ArraySlice<UInt8>) -> Result<[UInt8], HealthzError> {
        var out: [UInt8] = []
        var rest = data
        while true {
            guard let lineEnd = find([0x0D, 0x0A], in: rest) else {
                return .failure(HealthzError("truncated chunked body"))
            }
            let sizeText = String(decoding: rest[..<lineEnd], as: UTF8.self)
                .split(separator: ";", maxSplits: 1).first.map { $0.trimmingBlanks() } ?? ""
            guard let size = Int(sizeText, radix: 16), size >= 0 else {
                return .failure(HealthzError("bad chunk size '\(sizeText.prefix(20))'"))
            }
            rest = rest[(lineEnd + 2)...]
            if size == 0 { return .success(out) }
            guard rest.count >= size + 2 else { return .failure(HealthzError("truncated chunked body")) }
            out.append(contentsOf: rest.prefix(size))
            rest = rest.dropFirst(size + 2)
        }
    }

    private static func find(_ needle: [UInt8], in haystack: ArraySlice<UInt8>) -> Int? {
        guard haystack.count >= needle.count else { return nil }
        var i = haystack.startIndex
        while i <= haystack.endIndex - needle.count {
            if haystack[i..<(i + needle.count)].elementsEqual(needle) { return i }
            i += 1
        }
        return nil
    }
}

extension StringProtocol {
    fileprivate func trimmingBlanks() -> String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" { s = s.dropFirst() }
        while let l = s.last, l == " " || l == "\t" { s = s.dropLast() }
        return String(s)
    }
}
