/// Why a relayed exchange or stream ended on the owner without its answer being delivered.
public enum RelayEnd: Sendable, Equatable {
    /// The relay sent RELAY_CLOSE: its client went away (as a local polling connection closing).
    case clientGone
    /// The link to the relay went down: drop the held poll or stream WITHOUT closing the
    /// session; the client's next request, through any node, finds it.
    case relayLost
}
