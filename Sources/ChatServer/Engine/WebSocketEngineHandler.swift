import EngineIO
import NIOCore
import NIOWebSocket

/// The whole WebSocket stage of one connection: it cuts frames out of the bytes
/// (`WebSocketFrameReader`), joins fragmented messages, turns each message into an Engine.IO
/// packet for its session, answers control frames, and writes the session's frames, which are
/// already encoded bytes (`WebSocketWire`).
///
/// One handler instead of NIO's frame decoder, encoder, protocol-error handler, aggregator and a
/// raw writer: each handler costs an idle connection a context and an object or two, and idle
/// connections are what a chat node holds most of. Protocol violations close this connection with a close code
/// and reason; nothing else is hurt.
///
/// The packets go to the session, or, when another node owns the session (docs/RELAY.md), to
/// the relayed stream to that node, checked here exactly as for a local session.
final class WebSocketEngineHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer

    /// Where the client's packets go.
    enum Target {
        /// The session, on this node.
        case session(EngineSession)
        /// The session's owner, over the mesh.
        case relay(RelayedWebSocket)
    }

    private let target: Target
    private let metrics: ServerMetrics
    private let maxMessageSize: Int
    private var reader: WebSocketFrameReader
    private var context: ChannelHandlerContext?
    private var closing = false

    /// A fragmented message in progress: its opcode and the unmasked bytes so far.
    private var fragmentOpcode: UInt8?
    private var fragments: ByteBuffer?
    private var fragmentCount = 0
    static let maxFragments = 1024

    convenience init(session: EngineSession, metrics: ServerMetrics, maxMessageSize: Int) {
        self.init(target: .session(session), metrics: metrics, maxMessageSize: maxMessageSize)
    }

    init(target: Target, metrics: ServerMetrics, maxMessageSize: Int) {
        self.target = target
        self.metrics = metrics
        self.maxMessageSize = maxMessageSize
        self.reader = WebSocketFrameReader(maxFrameSize: maxMessageSize)
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    /// The channel's writability, kept here so that a broadcast checks a stored flag per member
    /// rather than asking the channel (a protocol call and an atomic load).
    private(set) var isWritable = true

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        isWritable = context.channel.isWritable
        context.fireChannelWritabilityChanged()
    }

    // MARK: Writing (on the channel's event loop)

    /// Writes encoded frame bytes without flushing. Must be called on the channel's event loop.
    func write(_ frame: ByteBuffer) {
        context?.write(NIOAny(frame), promise: nil)
    }

    /// Writes and flushes a room's broadcasts in one pass through the pipeline; false when the
    /// client is over the outbound bound (the channel holds more than `outbound_buffer`).
    func writeBroadcasts(_ bytes: ByteBuffer) -> Bool {
        guard isWritable else { return false }
        if !closing { context?.writeAndFlush(NIOAny(bytes), promise: nil) }
        return true
    }

    func flush() {
        context?.flush()
    }

    // MARK: Reading

    /// Set while `channelRead` works through bytes. What it does can re-enter it: a `41` ends
    /// the session, its room's pending batch is flushed to this channel, and NIO's flush may
    /// read the socket and call `channelRead` again on this same handler while `reader` is
    /// still mid-`read` (an exclusive access: a second one traps). So bytes that arrive
    /// meanwhile wait in `reentrantInput`, and the outer call reads them, in order, after.
    private var readingInput = false
    private var reentrantInput = CircularBuffer<ByteBuffer>()

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !closing else { return }
        let bytes = unwrapInboundIn(data)
        guard !readingInput else {
            reentrantInput.append(bytes)
            return
        }
        readingInput = true
        defer { readingInput = false }
        read(bytes, context: context)
        while !closing, let next = reentrantInput.popFirst() {
            read(next, context: context)
        }
        reentrantInput.removeAll()
    }

    private func read(_ bytes: ByteBuffer, context: ChannelHandlerContext) {
        do {
            try reader.read(bytes, allocator: context.channel.allocator) { frame in
                if !closing { receive(frame, context: context) }
            }
        } catch WebSocketFrameReader.Failure.frameTooLarge {
            fail(context: context, code: .messageTooLarge, reason: "frame too large")
        } catch WebSocketFrameReader.Failure.protocolViolation(let reason) {
            fail(context: context, code: .protocolError, reason: reason)
        } catch {
            fail(context: context, code: .protocolError, reason: "\(error)")
        }
    }

    private func receive(_ frame: WebSocketFrameReader.Frame, context: ChannelHandlerContext) {
        guard frame.isMasked else {
            return fail(context: context, code: .protocolError, reason: "client frames must be masked")
        }
        guard frame.reservedBits == 0 else {
            return fail(context: context, code: .protocolError, reason: "reserved bits set")
        }
        switch frame.opcode {
        case WebSocketWire.textOpcode, WebSocketWire.binaryOpcode:
            guard fragmentOpcode == nil else {
                return fail(context: context, code: .protocolError, reason: "new message before the last one ended")
            }
            if frame.fin {
                receiveMessage(opcode: frame.opcode, payload: frame.payload, context: context)
            } else {
                fragmentOpcode = frame.opcode
                appendFragment(frame, context: context)
            }
        case WebSocketWire.continuationOpcode:
            guard let opcode = fragmentOpcode else {
                return fail(context: context, code: .protocolError, reason: "continuation without a message")
            }
            guard appendFragment(frame, context: context), frame.fin, let message = fragments else { return }
            fragmentOpcode = nil
            fragments = nil
            fragmentCount = 0
            receiveMessage(opcode: opcode, payload: message, context: context)
        case WebSocketWire.pingOpcode:
            // Length and FIN of control frames were checked by the reader.
            context.writeAndFlush(NIOAny(WebSocketWire.frame(opcode: WebSocketWire.pongOpcode, payload: frame.payload)), promise: nil)
        case WebSocketWire.pongOpcode:
            break
        case WebSocketWire.closeOpcode:
            closeEchoing(context: context, payload: frame.payload)
        default:
            fail(context: context, code: .protocolError, reason: "unknown opcode")
        }
    }

    /// Adds one fragment; false (and the connection failing) when the message grows past the limits.
    @discardableResult
    private func appendFragment(_ frame: WebSocketFrameReader.Frame, context: ChannelHandlerContext) -> Bool {
        fragmentCount += 1
        let size = (fragments?.readableBytes ?? 0) + frame.payload.readableBytes
        guard fragmentCount <= Self.maxFragments else {
            fail(context: context, code: .protocolError, reason: "too many fragments")
            return false
        }
        guard size <= maxMessageSize else {
            fail(context: context, code: .messageTooLarge, reason: "message too large")
            return false
        }
        var payload = frame.payload
        if fragments == nil {
            fragments = context.channel.allocator.buffer(capacity: payload.readableBytes)
        }
        fragments!.writeBuffer(&payload)
        return true
    }

    private func receiveMessage(opcode: UInt8, payload: ByteBuffer, context: ChannelHandlerContext) {
        metrics.bytesReceived.increment(by: Int64(payload.readableBytes))
        if opcode == WebSocketWire.binaryOpcode {
            switch target {
            case .session(let session):
                return forward(.binaryMessage(Array(payload.readableBytesView)), to: session, channel: context.channel)
            case .relay(let relayed):
                return relayed.clientSent(.binary, payload)
            }
        }
        guard let text = String(validating: payload.readableBytesView, as: UTF8.self) else {
            return fail(context: context, code: .dataInconsistentWithMessage, reason: "text frame is not UTF-8")
        }
        let packet: EnginePacket
        do {
            packet = try EnginePacket.decode(text: text[...])
        } catch {
            metrics.countError("parse_error")
            return fail(context: context, code: .protocolError, reason: "\(error)")
        }
        switch target {
        case .session(let session):
            forward(packet, to: session, channel: context.channel)
        case .relay(let relayed):
            // Checked as a local packet is; the owner gets the bytes the client sent.
            relayed.clientSent(.text, payload)
        }
    }

    private func forward(_ packet: EnginePacket, to session: EngineSession, channel: any Channel) {
        if session.eventLoop.inEventLoop {
            session.receive(webSocketPacket: packet, on: .local(channel))
        } else {
            session.eventLoop.execute { session.receive(webSocketPacket: packet, on: .local(channel)) }
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        switch target {
        case .session(let session):
            let channel = context.channel
            session.eventLoop.execute { session.webSocketClosed(.local(channel)) }
        case .relay(let relayed):
            relayed.clientGone()
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        metrics.countError("websocket_protocol")
        context.close(promise: nil)
    }

    private func closeEchoing(context: ChannelHandlerContext, payload: ByteBuffer) {
        closing = true
        var echo = payload
        let code = echo.readWebSocketErrorCode() ?? .normalClosure
        sendClose(context: context, code: code, reason: "")
    }

    private func fail(context: ChannelHandlerContext, code: WebSocketErrorCode, reason: String) {
        guard !closing else { return }
        closing = true
        fragments = nil
        metrics.countError("websocket_protocol")
        sendClose(context: context, code: code, reason: reason)
    }

    private func sendClose(context: ChannelHandlerContext, code: WebSocketErrorCode, reason: String) {
        let frame = WebSocketWire.closeFrame(code: code, reason: reason, allocator: context.channel.allocator)
        let channel = context.channel
        context.writeAndFlush(NIOAny(frame)).whenComplete { _ in
            channel.close(promise: nil)
        }
    }
}
