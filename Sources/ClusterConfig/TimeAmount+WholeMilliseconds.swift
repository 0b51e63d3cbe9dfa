import NIOCore

extension TimeAmount {
    /// The duration in whole milliseconds (truncated), for the places that must speak
    /// milliseconds as a number: cluster.conf and its summary, the Engine.IO handshake and
    /// heartbeat, the nginx configuration. Everything else keeps the `TimeAmount`.
    public var wholeMilliseconds: Int {
        Int(nanoseconds / 1_000_000)
    }
}
