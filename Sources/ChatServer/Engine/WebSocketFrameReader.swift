import NIOCore

/// Client-to-server WebSocket frames (RFC 6455 §5.2) cut out of the bytes as they arrive.
///
/// Our own rather than NIO's `ByteToMessageHandler(WebSocketFrameDecoder)`: that pair keeps two
/// objects, a pipeline context and a cumulation buffer per connection, and an idle chat
/// connection should hold as little as possible. This reader holds nothing between frames;
/// only the bytes of an unfinished frame are kept, copied out of the receive buffer so that
/// NIO can reuse it.
struct WebSocketFrameReader {
    struct Frame {
        var fin: Bool
        /// RSV1-3 (no extension is negotiated, so they must be 0).
        var reservedBits: UInt8
        var opcode: UInt8
        var isMasked: Bool
        /// The payload, unmasked.
        var payload: ByteBuffer

        var isControl: Bool { opcode & 0x8 != 0 }
    }

    enum Failure: Error, Equatable {
        /// The frame's payload is longer than `maxFrameSize` (close 1009).
        case frameTooLarge
        /// A control frame that is fragmented or longer than 125 bytes, or a 64-bit length with
        /// its top bit set (close 1002).
        case protocolViolation(String)
    }

    let maxFrameSize: Int
    private(set) var unfinished: ByteBuffer?

    init(maxFrameSize: Int) {
        self.maxFrameSize = maxFrameSize
    }

    /// Bytes waiting for the rest of their frame.
    var bufferedBytes: Int { unfinished?.readableBytes ?? 0 }

    /// Calls `body` for each whole frame in `bytes` (after any bytes kept from before), in order.
    /// A malformed frame throws; the reader must then not be used again.
    mutating func read(_ bytes: ByteBuffer, allocator: ByteBufferAllocator, _ body: (Frame) throws -> Void) throws {
        var input: ByteBuffer
        var growsKept = false
        if var kept = unfinished {
            unfinished = nil
            var more = bytes
            kept.writeBuffer(&more)
            input = kept
            growsKept = true
        } else {
            input = bytes
        }
        let start = input.readerIndex
        while let frame = try Self.cutFrame(from: &input, maxFrameSize: maxFrameSize) {
            try body(frame)
        }
        if growsKept && input.readerIndex == start {
            // Still the same unfinished frame, in our own buffer: kept as it is. Copying it again
            // on every read would cost a frame that trickles in over n reads n²/2 bytes of copying.
            unfinished = input
        } else if input.readableBytes > 0 {
            var copy = allocator.buffer(capacity: input.readableBytes)
            copy.writeBuffer(&input)
            unfinished = copy
        }
    }

    /// Cuts one frame off the front of `buffer`, or returns nil (consuming nothing) when the
    /// frame is not complete yet. Limits are checked as soon as the header is in, so a client
    /// cannot make the server wait for (or buffer) a frame it would refuse.
    static func cutFrame(from buffer: inout ByteBuffer, maxFrameSize: Int) throws(Failure) -> Frame? {
        let start = buffer.readerIndex
        guard let first = buffer.getInteger(at: start, as: UInt8.self),
              let second = buffer.getInteger(at: start + 1, as: UInt8.self)
        else { return nil }
        let fin = first & 0x80 != 0
        let opcode = first & 0x0F
        let isMasked = second & 0x80 != 0
        var headerLength = 2
        var length = UInt64(second & 0x7F)
        if length == 126 {
            guard let extended = buffer.getInteger(at: start + 2, as: UInt16.self) else { return nil }
            length = UInt64(extended)
            headerLength += 2
        } else if length == 127 {
            guard let extended = buffer.getInteger(at: start + 2, as: UInt64.self) else { return nil }
            guard extended & (1 << 63) == 0 else { throw .protocolViolation("64-bit length with the top bit set") }
            length = extended
            headerLength += 8
        }
        if opcode & 0x8 != 0 {
            guard fin else { throw .protocolViolation("fragmented control frame") }
            guard length <= 125 else { throw .protocolViolation("control frame longer than 125 bytes") }
        }
        guard length <= UInt64(maxFrameSize) else { throw .frameTooLarge }
        let payloadLength = Int(length)
        var maskKey: (UInt8, UInt8, UInt8, UInt8)?
        if isMasked {
            guard let key = buffer.getBytes(at: start + headerLength, length: 4) else { return nil }
            maskKey = (key[0], key[1], key[2], key[3])
            headerLength += 4
        }
        guard buffer.readableBytes >= headerLength + payloadLength else { return nil }
        buffer.moveReaderIndex(forwardBy: headerLength)
        var payload = buffer.readSlice(length: payloadLength)!
        if let maskKey {
            payload = unmask(payload, key: maskKey)
        }
        return Frame(fin: fin, reservedBits: (first >> 4) & 0x7, opcode: opcode, isMasked: isMasked, payload: payload)
    }

    /// A copy of `payload` XORed with the 4-byte key (RFC 6455 §5.3).
    private static func unmask(_ payload: ByteBuffer, key: (UInt8, UInt8, UInt8, UInt8)) -> ByteBuffer {
        var out = ByteBufferAllocator().buffer(capacity: payload.readableBytes)
        withUnsafeBytes(of: key) { key in
            payload.withUnsafeReadableBytes { source in
                _ = out.writeWithUnsafeMutableBytes(minimumWritableBytes: source.count) { target in
                    for index in 0..<source.count {
                        target[index] = source[index] ^ key[index & 3]
                    }
                    return source.count
                }
            }
        }
        return out
    }
}
