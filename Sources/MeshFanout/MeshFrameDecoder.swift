import NIOCore

/// Splits the byte stream of a mesh link into frames. The length limit is checked from the
/// 4-byte prefix alone, so an oversized frame is refused before any of it is buffered.
public struct MeshFrameDecoder: ByteToMessageDecoder {
    public typealias InboundOut = MeshFrame

    /// May be lowered before authentication and raised after it.
    public var maxFrameLength: Int

    public init(maxFrameLength: Int) {
        self.maxFrameLength = maxFrameLength
    }

    public mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let frame = try next(from: &buffer) else { return .needMoreData }
        context.fireChannelRead(wrapInboundOut(frame))
        return .continue
    }

    /// The pure part, for tests and fuzzing: one frame out of `buffer`, or nil if incomplete.
    public func next(from buffer: inout ByteBuffer) throws(MeshFrameError) -> MeshFrame? {
        guard let length: UInt32 = buffer.getInteger(at: buffer.readerIndex) else { return nil }
        guard Int(length) <= maxFrameLength else { throw .frameTooLarge(length: Int(length), limit: maxFrameLength) }
        guard length > 0 else { throw .emptyFrame }
        guard buffer.readableBytes >= MeshFrameCodec.headerLength + Int(length) else { return nil }
        buffer.moveReaderIndex(forwardBy: MeshFrameCodec.headerLength)
        let body = buffer.readSlice(length: Int(length))!
        return try MeshFrameCodec.decode(body: body)
    }
}

/// Writes mesh frames with their length prefix.
public struct MeshFrameEncoder: MessageToByteEncoder {
    public typealias OutboundIn = MeshFrame

    public init() {}

    public func encode(data: MeshFrame, out: inout ByteBuffer) throws {
        MeshFrameCodec.encode(data, into: &out)
    }
}
