import NIOCore

/// The owner's end of a relayed WebSocket stream: what the client sends, and the stream's end.
public protocol RelayStreamSink: AnyObject, Sendable {
    /// A text or binary Engine.IO packet from the client, in the order it sent them.
    func received(_ kind: RelayFrameKind, _ payload: ByteBuffer)
    /// The stream ended from the relay's side (RELAY_CLOSE: `.clientGone`; link down:
    /// `.relayLost`). Called at most once, and not after the owner closed the stream itself.
    func ended(_ why: RelayEnd)
}
