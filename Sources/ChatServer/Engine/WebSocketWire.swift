import NIOCore

/// Server-to-client WebSocket frames as bytes (RFC 6455 §5.2: FIN, opcode, unmasked length),
/// so a broadcast is framed once and the same buffer is written to every member's socket.
enum WebSocketWire {
    static let textOpcode: UInt8 = 0x1
    static let binaryOpcode: UInt8 = 0x2

    static func frame(opcode: UInt8, payload: ByteBuffer, allocator: ByteBufferAllocator = ByteBufferAllocator()) -> ByteBuffer {
        let length = payload.readableBytes
        var frame = allocator.buffer(capacity: length + 10)
        frame.writeInteger(0x80 | opcode)
        if length < 126 {
            frame.writeInteger(UInt8(length))
        } else if length <= Int(UInt16.max) {
            frame.writeInteger(UInt8(126))
            frame.writeInteger(UInt16(length))
        } else {
            frame.writeInteger(UInt8(127))
            frame.writeInteger(UInt64(length))
        }
        frame.writeImmutableBuffer(payload)
        return frame
    }

    static func textFrame(_ payload: ByteBuffer) -> ByteBuffer {
        frame(opcode: textOpcode, payload: payload)
    }
}

/// Sits next to the socket end of a WebSocket pipeline and lets the session write frames that
/// are already encoded (`WebSocketWire`), skipping the frame encoder. Everything else passes.
final class WebSocketRawWriter: ChannelOutboundHandler, RemovableChannelHandler {
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private var context: ChannelHandlerContext?

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    /// Writes encoded frame bytes. Must be called on the channel's event loop.
    func write(_ frame: ByteBuffer) {
        guard let context else { return }
        context.write(wrapOutboundOut(frame), promise: nil)
    }

    func flush() {
        context?.flush()
    }
}
