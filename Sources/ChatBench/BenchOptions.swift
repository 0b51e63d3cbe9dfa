import Foundation

/// Everything `chatmesh bench` is told. Plain values; validated by `validate()`.
public struct BenchOptions: Sendable {
    public struct Target: Sendable, Equatable, CustomStringConvertible {
        public var host: String
        public var port: Int
        public init(host: String, port: Int) {
            self.host = host
            self.port = port
        }
        public var description: String { "\(host):\(port)" }
    }

    public var targets: [Target] = [Target(host: "127.0.0.1", port: 6001)]
    public var clients = 1000
    public var rooms = 10
    public var senders = 20
    /// Says per second per sender; 0 = as fast as possible with `window` in flight per sender.
    public var rate: Double = 10
    public var window = 8
    public var duration: Double = 10
    public var warmup: Double = 2
    /// After the senders stop, how long receivers keep counting.
    public var drain: Double = 1
    public var payload = 64
    /// Connections started per second; 0 = as fast as the pending limit allows.
    public var connectRate: Double = 2000
    public var maxPendingConnects = 256
    /// Seconds to wait for every client to be connected and joined.
    public var connectTimeout: Double = 60
    public var threads = 1
    /// Open this many connections, join, and hold them (no says) until SIGTERM or `duration`.
    public var idle: Int?
    /// Hold time in idle mode; nil = until SIGTERM.
    public var idleHold: Double?
    public var jsonOnly = false
    public var roomPrefix = "r"
    public var usernamePrefix = "b"
    /// Server processes whose CPU time (utime + stime from /proc) is sampled around the window.
    public var serverPIDs: [Int32] = []

    public init() {}

    public static func parseTargets(_ text: String) throws -> [Target] {
        let parts = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        guard !parts.isEmpty else { throw BenchError.invalidOption("--targets needs host:port[,host:port…]") }
        return try parts.map { part in
            guard let colon = part.lastIndex(of: ":"), let port = Int(part[part.index(after: colon)...]),
                  port > 0, port < 65536 else {
                throw BenchError.invalidOption("bad target '\(part)' (want host:port)")
            }
            var host = String(part[..<colon])
            if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
            return Target(host: host.isEmpty ? "127.0.0.1" : host, port: port)
        }
    }

    public func validate() throws {
        func check(_ ok: Bool, _ message: String) throws {
            if !ok { throw BenchError.invalidOption(message) }
        }
        try check(!targets.isEmpty, "at least one target")
        try check(clients >= 1, "--clients must be at least 1")
        try check(rooms >= 1 && rooms <= clients, "--rooms must be between 1 and --clients")
        try check(senders >= 0 && senders <= clients, "--senders must be between 0 and --clients")
        try check(rate >= 0 && rate <= 1_000_000, "--rate must be between 0 and 1000000")
        try check(window >= 1 && window <= 100_000, "--window must be between 1 and 100000")
        try check(duration > 0, "--duration must be positive")
        try check(warmup >= 0, "--warmup must not be negative")
        try check(drain >= 0, "--drain must not be negative")
        try check(payload >= 1 && payload <= 1_000_000, "--payload must be between 1 and 1000000")
        try check(connectRate >= 0, "--connect-rate must not be negative")
        try check(connectTimeout > 0, "--connect-timeout must be positive")
        try check(threads >= 1 && threads <= 64, "--threads must be between 1 and 64")
        if let idle { try check(idle >= 1, "--idle must be at least 1") }
    }
}

public enum BenchError: Error, CustomStringConvertible {
    case invalidOption(String)
    case noConnections(String)

    public var description: String {
        switch self {
        case .invalidOption(let m): return m
        case .noConnections(let m): return m
        }
    }
}
