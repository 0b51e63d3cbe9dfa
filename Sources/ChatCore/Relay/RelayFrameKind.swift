/// What a RELAY_FRAME carries on a relayed WebSocket stream.
public enum RelayFrameKind: UInt8, Sendable, CaseIterable {
    /// A text Engine.IO packet from the client (relay to owner).
    case text = 1
    /// A binary Engine.IO packet from the client (relay to owner).
    case binary = 2
    /// WebSocket frame bytes from the owner, already framed: the relay writes them verbatim
    /// (encode-once, as for local members).
    case framed = 3
}
