/// The owner side of the relay, where requests relayed to this node go; implemented by the
/// node's HTTP/Engine.IO layer and given to `SessionRelay.setOwnerHandler(_:)`.
public protocol RelayOwnerHandler: AnyObject, Sendable {
    /// A relayed GET/POST from `peer`: answer exactly once with `exchange.reply(_:)` (any thread).
    func handleRelayed(_ request: RelayedRequest, from peer: String, exchange: RelayExchange)
    /// A relayed WebSocket: return the sink for the client's packets, or nil to refuse
    /// (unknown sid: the stream is closed with 4404).
    func openRelayedStream(sid: String, origin: String?, from peer: String, stream: any RelayStream) -> (any RelayStreamSink)?
}
