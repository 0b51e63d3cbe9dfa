import NIOCore
import NIOWebSocket

/// Server-to-client WebSocket frames as bytes (RFC 6455 §5.2: FIN, opcode, unmasked length),
/// so a broadcast is framed once and the same buffer is written to every member's socket.
enum WebSocketWire {
    static let continuationOpcode: UInt8 = 0x0
    static let textOpcode: UInt8 = 0x1
    static let binaryOpcode: UInt8 = 0x2
    static let closeOpcode: UInt8 = 0x8
    static let pingOpcode: UInt8 = 0x9
    static let pongOpcode: UInt8 = 0xA

    static func frame(opcode: UInt8, payload: ByteBuffer, allocator: ByteBufferAllocator = ByteBufferAllocator()) -> ByteBuffer {
        var frame = allocator.buffer(capacity: payload.readableBytes + 10)
        append(opcode: opcode, payload: payload, to: &frame)
        return frame
    }

    /// Writes one unfragmented frame carrying `payload` at the end of `out`.
    static func append(opcode: UInt8, payload: ByteBuffer, to out: inout ByteBuffer) {
        let length = payload.readableBytes
        out.writeInteger(0x80 | opcode)
        if length < 126 {
            out.writeInteger(UInt8(length))
        } else if length <= Int(UInt16.max) {
            out.writeInteger(UInt8(126))
            out.writeInteger(UInt16(length))
        } else {
            out.writeInteger(UInt8(127))
            out.writeInteger(UInt64(length))
        }
        out.writeImmutableBuffer(payload)
    }

    static func textFrame(_ payload: ByteBuffer) -> ByteBuffer {
        frame(opcode: textOpcode, payload: payload)
    }

    /// A close frame: the status code and a reason cut (on a character boundary) to fit the
    /// 125 bytes a control frame may carry.
    static func closeFrame(code: WebSocketErrorCode, reason: String = "", allocator: ByteBufferAllocator = ByteBufferAllocator()) -> ByteBuffer {
        var payload = allocator.buffer(capacity: 2 + min(reason.utf8.count, 123))
        payload.write(webSocketErrorCode: code)
        var used = 0
        for character in reason {
            let bytes = character.utf8.count
            guard used + bytes <= 123 else { break }
            payload.writeString(String(character))
            used += bytes
        }
        return frame(opcode: closeOpcode, payload: payload, allocator: allocator)
    }
}
