import ChatCore
import EngineIO
import NIOCore
import NIOWebSocket

/// On the owner: a session's WebSocket that another node holds (the polling→WebSocket upgrade
/// landed there) and relays as a stream (docs/RELAY.md). The client's packets arrive here,
/// are checked as the local WebSocket path checks them (size, UTF-8, Engine.IO decoding) and go
/// to the session on its loop; the session's frames go back as pre-framed bytes, which the
/// relay writes to its client verbatim.
final class RelayedEngineSocket: RelayStreamSink, Sendable {
    private let session: EngineSession
    private let stream: any RelayStream
    private let metrics: ServerMetrics
    /// The owner's `max_payload`, whatever the relay allowed.
    private let maxMessageSize: Int

    init(session: EngineSession, stream: any RelayStream, metrics: ServerMetrics, maxMessageSize: Int) {
        self.session = session
        self.stream = stream
        self.metrics = metrics
        self.maxMessageSize = maxMessageSize
    }

    // MARK: From the session (any thread)

    func send(_ frame: ByteBuffer) {
        stream.send(.framed, frame)
    }

    func close(code: WebSocketErrorCode) {
        stream.close(code: UInt16(webSocketErrorCode: code))
    }

    // MARK: From the relay (RelayStreamSink, on the mesh loop)

    func received(_ kind: RelayFrameKind, _ payload: ByteBuffer) {
        guard payload.readableBytes <= maxMessageSize else {
            return fail(code: .messageTooLarge)
        }
        let packet: EnginePacket
        switch kind {
        case .binary:
            packet = .binaryMessage(Array(payload.readableBytesView))
        case .text:
            guard let text = String(validating: payload.readableBytesView, as: UTF8.self) else {
                return fail(code: .dataInconsistentWithMessage)
            }
            do {
                packet = try EnginePacket.decode(text: text[...])
            } catch {
                metrics.countError("parse_error")
                return fail(code: .protocolError)
            }
        case .framed:
            // Framed bytes only ever go from an owner to a relay.
            return fail(code: .protocolError)
        }
        metrics.bytesReceived.increment(by: Int64(payload.readableBytes))
        let session = self.session
        session.eventLoop.execute { session.receive(webSocketPacket: packet, on: .relayed(self)) }
    }

    /// The relay's client went away, or the link to the relay did: to the session, as its
    /// WebSocket closing.
    func ended(_ why: RelayEnd) {
        let session = self.session
        session.eventLoop.execute { session.webSocketClosed(.relayed(self)) }
    }

    /// A packet the local path would refuse: the stream ends with the code the local socket
    /// would close with, and the session hears its socket closed.
    private func fail(code: WebSocketErrorCode) {
        metrics.countError("websocket_protocol")
        close(code: code)
        ended(.clientGone)
    }
}
