import ChatCore
import NIOCore

/// The relay's end of a relayed WebSocket stream, given to the node by `openStream`: what the
/// client sends goes to the owner as RELAY_FRAME; `close` sends RELAY_CLOSE. The owner's frames
/// and its close come back through `onFrame` / `onClose`, called on the mesh loop.
///
/// Every call is queued on the mesh loop, like the registration `openStream` queued, so they
/// reach the link in the order they were made.
// @unchecked: `link` and `id` are set and read on the mesh loop only; every method hops there.
final class RelayedStreamHandle: RelayStream, @unchecked Sendable {
    private let eventLoop: any EventLoop
    private let metrics: RelayMetrics
    let onFrame: @Sendable (RelayFrameKind, ByteBuffer) -> Void
    let onClose: @Sendable (UInt16) -> Void
    /// The link and id, once registered; nil while queued or if it never was (then `onClose` ran).
    var link: MeshRelayLink?
    var id: UInt64 = 0

    init(eventLoop: any EventLoop, metrics: RelayMetrics, onFrame: @escaping @Sendable (RelayFrameKind, ByteBuffer) -> Void,
         onClose: @escaping @Sendable (UInt16) -> Void) {
        self.eventLoop = eventLoop
        self.metrics = metrics
        self.onFrame = onFrame
        self.onClose = onClose
    }

    /// A client's text or binary packet. Framed bytes only ever go from the owner to a relay
    /// (the owner would close the whole link for one): they are not sent.
    func send(_ kind: RelayFrameKind, _ payload: ByteBuffer) {
        guard kind != .framed else { return }
        eventLoop.execute { [self] in
            guard isRegistered, let link else { return }
            link.send(.relayFrame(id: id, kind: kind, payload: payload))
        }
    }

    /// Ends the stream from the client's side; `onClose` is then not called.
    func close(code: UInt16) {
        eventLoop.execute { [self] in
            guard isRegistered, let link else { return }
            _ = link.outbound.remove(id)
            metrics.count(.webSocket, .ok)
            link.send(.relayClose(id: id, code: code))
        }
    }

    /// Whether this stream is still in its link's table (on the mesh loop).
    private var isRegistered: Bool {
        guard let link, link.isOpen, case .stream(let handle)? = link.outbound.entries[id] else { return false }
        return handle === self
    }
}
