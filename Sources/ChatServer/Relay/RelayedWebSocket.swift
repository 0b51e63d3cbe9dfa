import ChatCore
import NIOCore
import NIOWebSocket

/// On the relay: a client's WebSocket for a session another node owns (the polling→WebSocket
/// upgrade landed here; docs/RELAY.md). The stream to the owner is opened before the handshake
/// is answered, so an owner that cannot be reached gets the client the usual unknown-sid 400.
/// Then the client's packets (checked by `WebSocketEngineHandler` as for a local session) go
/// to the owner, and the owner's frames, framed there already, are written to the client as
/// they are. Either side's close ends both.
///
/// The owner's `outbound_buffer` is applied here, where the client's connection is: a client
/// that does not read what the owner sends is cut off as the owner would cut it.
final class RelayedWebSocket: @unchecked Sendable {  // unchecked: state only on `channel.eventLoop`; the stream's callbacks hop there
    private let channel: any Channel
    private let metrics: ServerMetrics
    private var stream: (any RelayStream)?
    /// The owner's frames that came before the WebSocket pipeline was ready, and its close.
    private var early: [ByteBuffer] = []
    private var earlyClose: UInt16?
    private var ready = false
    /// Either side ended the stream: nothing more goes either way.
    private var ended = false

    /// Opens the stream to the owner of `sid` (on the channel's loop, while the handshake is
    /// decided); nil when there is no live owner to open it to.
    static func open(channel: any Channel, sid: String, origin: String?, relay: any SessionRelay,
                     metrics: ServerMetrics) -> RelayedWebSocket? {
        channel.eventLoop.preconditionInEventLoop()
        let socket = RelayedWebSocket(channel: channel, metrics: metrics)
        let loop = channel.eventLoop
        let onLoop: @Sendable (@escaping @Sendable () -> Void) -> Void = { work in
            if loop.inEventLoop { work() } else { loop.execute(work) }
        }
        guard let stream = relay.openStream(
            sid: sid, origin: origin,
            onFrame: { kind, payload in onLoop { socket.ownerSent(kind, payload) } },
            onClose: { code in onLoop { socket.ownerClosed(code: code) } }
        ) else { return nil }
        socket.stream = stream
        // Also covers a client that goes before the upgrade completes.
        channel.closeFuture.whenComplete { _ in socket.clientGone() }
        return socket
    }

    private init(channel: any Channel, metrics: ServerMetrics) {
        self.channel = channel
        self.metrics = metrics
    }

    /// The WebSocket pipeline is in place: what the owner sent meanwhile goes out now.
    func pipelineReady() {
        channel.eventLoop.preconditionInEventLoop()
        ready = true
        for frame in early { channel.write(frame, promise: nil) }
        if !early.isEmpty { channel.flush() }
        early = []
        if let code = earlyClose { closeClient(code: code) }
    }

    // MARK: From the client (on the channel's loop)

    /// A text or binary Engine.IO packet, as the client sent it.
    func clientSent(_ kind: RelayFrameKind, _ payload: ByteBuffer) {
        guard !ended else { return }
        stream?.send(kind, payload)
    }

    /// The client's connection closed (a close frame, an error or the peer gone).
    func clientGone() {
        channel.eventLoop.preconditionInEventLoop()
        guard !ended else { return }
        ended = true
        stream?.close(code: UInt16(webSocketErrorCode: .normalClosure))
        stream = nil  // its callbacks hold this object
        early = []
    }

    // MARK: From the owner (hopped to the channel's loop)

    private func ownerSent(_ kind: RelayFrameKind, _ payload: ByteBuffer) {
        guard !ended, kind == .framed else { return }
        guard ready else { return early.append(payload) }
        guard channel.isWritable else {
            // Past `outbound_buffer` (the channel's high watermark): cut off as a local client
            // would be, and the owner closes the session as for its own.
            metrics.countError("outbound_overflow")
            ended = true
            stream?.close(code: UInt16(webSocketErrorCode: .normalClosure))
            stream = nil
            return closeClient(code: UInt16(webSocketErrorCode: .normalClosure))
        }
        channel.writeAndFlush(payload, promise: nil)
    }

    private func ownerClosed(code: UInt16) {
        guard !ended else { return }
        ended = true
        stream = nil
        if ready { closeClient(code: code) } else { earlyClose = code }
    }

    /// A close frame with the owner's code, then the connection; closed after the session's
    /// close grace at the latest (a client that stopped reading never lets the frame out).
    private func closeClient(code: UInt16) {
        let channel = self.channel
        let frame = WebSocketWire.closeFrame(code: WebSocketErrorCode(codeNumber: Int(code)), allocator: channel.allocator)
        channel.writeAndFlush(frame).whenComplete { _ in channel.close(promise: nil) }
        channel.eventLoop.scheduleTask(in: EngineSession.closeGrace) { channel.close(promise: nil) }
    }
}
