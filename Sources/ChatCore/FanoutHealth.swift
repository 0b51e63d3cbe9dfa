import SocketIO

/// How a fanout is doing, as the node reports it: readiness (systemd READY=1, /healthz 200 or
/// 503), a fragment of systemd's STATUS= line, and the fields it adds to /healthz.
public struct FanoutHealth: Sendable {
    /// False while the node cannot serve rooms (Redis mode without its subscriber).
    public var isReady: Bool
    /// For STATUS=, e.g. "mesh peers up 1/2"; nil adds nothing.
    public var statusLine: String?
    /// Appended, in order, to the /healthz JSON object.
    public var details: [(String, JSONValue)]

    public init(isReady: Bool, statusLine: String? = nil, details: [(String, JSONValue)] = []) {
        self.isReady = isReady
        self.statusLine = statusLine
        self.details = details
    }
}
