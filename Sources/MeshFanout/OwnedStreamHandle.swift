import ChatCore
import NIOCore

/// The owner's end of a relayed WebSocket stream, given to the owner handler: the bytes it
/// sends (already framed for WebSocket) go to the relay as RELAY_FRAME; `close` sends
/// RELAY_CLOSE. Callable from any thread: on the mesh loop it runs inline, elsewhere it is
/// queued there, so one thread's calls keep their order. Nothing is sent once the stream ended
/// (closed by either side, or its link down).
// @unchecked: `link` is touched on the mesh loop only; every method hops there.
final class OwnedStreamHandle: RelayStream, @unchecked Sendable {
    private let eventLoop: any EventLoop
    private let link: MeshRelayLink
    let id: UInt64

    init(eventLoop: any EventLoop, link: MeshRelayLink, id: UInt64) {
        self.eventLoop = eventLoop
        self.link = link
        self.id = id
    }

    func send(_ kind: RelayFrameKind, _ payload: ByteBuffer) {
        onLoop { [self] in
            guard isOpen else { return }
            link.send(.relayFrame(id: id, kind: kind, payload: payload))
        }
    }

    /// Ends the stream from the owner's side; the sink's `ended` is then not called.
    func close(code: UInt16) {
        onLoop { [self] in
            guard isOpen else { return }
            _ = link.inbound.remove(id)
            link.send(.relayClose(id: id, code: code))
        }
    }

    private var isOpen: Bool {
        guard link.isOpen, case .stream(let handle, _, _)? = link.inbound.entries[id] else { return false }
        return handle === self
    }

    private func onLoop(_ work: @escaping @Sendable () -> Void) {
        if eventLoop.inEventLoop { work() } else { eventLoop.execute(work) }
    }
}
