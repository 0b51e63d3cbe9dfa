import NIOCore

/// One direction of a relayed WebSocket stream: send frames to the other side, or close it.
/// Callable from any thread; after `close` (or once the stream ended) both are no-ops.
public protocol RelayStream: AnyObject, Sendable {
    func send(_ kind: RelayFrameKind, _ payload: ByteBuffer)
    func close(code: UInt16)
}
