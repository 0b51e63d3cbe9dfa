import EngineIO
import NIOCore
import NIOWebSocket

/// Turns WebSocket frames into Engine.IO packets for one session (one packet per frame; text
/// frames carry text packets, binary frames raw binary messages) and answers control frames.
/// Protocol violations close this connection with a close code and reason; nothing else is hurt.
final class WebSocketEngineHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    private let session: EngineSession
    private let metrics: ServerMetrics
    private var closing = false

    init(session: EngineSession, metrics: ServerMetrics) {
        self.session = session
        self.metrics = metrics
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        guard frame.maskKey != nil else {
            return fail(context: context, code: .protocolError, reason: "client frames must be masked")
        }
        guard frame.rsv1 == false, frame.rsv2 == false, frame.rsv3 == false else {
            return fail(context: context, code: .protocolError, reason: "reserved bits set")
        }
        let payload = frame.unmaskedData
        metrics.bytesReceived.increment(by: Int64(payload.readableBytes))
        switch frame.opcode {
        case .text:
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
            forward(packet, channel: context.channel)
        case .binary:
            forward(.binaryMessage(Array(payload.readableBytesView)), channel: context.channel)
        case .ping:
            guard frame.fin, payload.readableBytes <= 125 else {
                return fail(context: context, code: .protocolError, reason: "invalid ping frame")
            }
            context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .pong, data: payload)), promise: nil)
        case .pong:
            break
        case .connectionClose:
            closeEchoing(context: context, payload: payload)
        default:
            fail(context: context, code: .protocolError, reason: "unknown opcode")
        }
    }

    private func forward(_ packet: EnginePacket, channel: any Channel) {
        let session = self.session
        if session.eventLoop.inEventLoop {
            session.receive(webSocketPacket: packet, on: channel)
        } else {
            session.eventLoop.execute { session.receive(webSocketPacket: packet, on: channel) }
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        let session = self.session
        let channel = context.channel
        session.eventLoop.execute { session.webSocketClosed(channel) }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        // Frame decoding errors (oversized frame, bad length) were already answered with a close
        // frame by NIO's automatic error handling; make sure the connection goes away.
        metrics.countError("websocket_protocol")
        context.close(promise: nil)
    }

    private func closeEchoing(context: ChannelHandlerContext, payload: ByteBuffer) {
        guard !closing else { return context.close(promise: nil) }
        closing = true
        var echo = payload
        let code = echo.readWebSocketErrorCode() ?? .normalClosure
        var data = context.channel.allocator.buffer(capacity: 2)
        data.write(webSocketErrorCode: code)
        context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, data: data))).whenComplete { _ in
            context.close(promise: nil)
        }
    }

    private func fail(context: ChannelHandlerContext, code: WebSocketErrorCode, reason: String) {
        guard !closing else { return }
        closing = true
        metrics.countError("websocket_protocol")
        var data = context.channel.allocator.buffer(capacity: 2 + reason.utf8.count)
        data.write(webSocketErrorCode: code)
        data.writeString(String(decoding: reason.utf8.prefix(120), as: UTF8.self))
        context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, data: data))).whenComplete { _ in
            context.close(promise: nil)
        }
    }
}
