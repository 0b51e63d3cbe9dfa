import NIOCore

/// Encodes and decodes mesh frames. Decoding reads one complete frame body (type + fields) and
/// rejects anything that does not parse exactly: short fields, extra bytes, bad UTF-8, a
/// snapshot with more rooms than bytes could hold.
public enum MeshFrameCodec {
    public static let headerLength = 4
    public static let maxStringLength = Int(UInt16.max)

    /// Writes `frame` with its length prefix.
    public static func encode(_ frame: MeshFrame, into buffer: inout ByteBuffer) {
        let lengthIndex = buffer.writerIndex
        buffer.writeInteger(UInt32(0))
        let start = buffer.writerIndex
        buffer.writeInteger(frame.type.rawValue)
        switch frame {
        case .hello(let hello):
            buffer.writeInteger(hello.version)
            writeString(hello.node, into: &buffer)
            buffer.writeInteger(hello.epoch)
            buffer.writeBytes(hello.nonce)
        case .auth(let auth):
            buffer.writeBytes(auth.proof)
            buffer.writeInteger(auth.resumeEpoch)
            buffer.writeInteger(auth.resumeSequence)
        case .snapshot(let rooms):
            buffer.writeInteger(UInt32(rooms.count))
            for room in rooms { writeString(room, into: &buffer) }
        case .sub(let room), .unsub(let room):
            writeString(room, into: &buffer)
        case .pub(let sequence, let room, let payload):
            buffer.writeInteger(sequence)
            writeString(room, into: &buffer)
            buffer.writeImmutableBuffer(payload)
        case .pubStamped(let sequence, let originSequence, let room, let payload):
            buffer.writeInteger(sequence)
            buffer.writeInteger(originSequence)
            writeString(room, into: &buffer)
            buffer.writeImmutableBuffer(payload)
        case .session(let record):
            writeSession(record, into: &buffer)
        case .relayRequest(let id, let request):
            writeRelayRequest(id: id, request, into: &buffer)
        case .relayReply(let id, let reply):
            writeRelayReply(id: id, reply, into: &buffer)
        case .relayFrame(let id, let kind, let payload):
            buffer.writeInteger(id)
            buffer.writeInteger(kind.rawValue)
            buffer.writeImmutableBuffer(payload)
        case .relayClose(let id, let code):
            buffer.writeInteger(id)
            buffer.writeInteger(code)
        case .ack(let value), .ping(let value), .pong(let value):
            buffer.writeInteger(value)
        case .goodbye(let reason):
            writeString(String(decoding: reason.utf8.prefix(1024), as: UTF8.self), into: &buffer)
        }
        buffer.setInteger(UInt32(buffer.writerIndex - start), at: lengthIndex)
    }

    public static func encode(_ frame: MeshFrame, allocator: ByteBufferAllocator = ByteBufferAllocator()) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: 64)
        encode(frame, into: &buffer)
        return buffer
    }

    /// Room names and node names are at most 65,535 bytes of UTF-8 (`limit`, lower for some
    /// fields); a longer one is cut at the last character that fits (room ids are far shorter
    /// by configuration).
    static func writeString(_ text: String, into buffer: inout ByteBuffer, limit: Int = maxStringLength) {
        var utf8 = Array(text.utf8)
        if utf8.count > limit {
            var end = limit
            // Back up over continuation bytes (10xxxxxx) to the start of the cut character.
            while end > 0, utf8[end] & 0xC0 == 0x80 { end -= 1 }
            utf8.removeSubrange(end...)
        }
        buffer.writeInteger(UInt16(utf8.count))
        buffer.writeBytes(utf8)
    }

    /// Decodes one frame body (type byte + fields), without the length prefix.
    public static func decode(body: ByteBuffer) throws(MeshFrameError) -> MeshFrame {
        var body = body
        guard let rawType: UInt8 = body.readInteger() else { throw .emptyFrame }
        guard let type = MeshFrame.FrameType(rawValue: rawType) else { throw .unknownType(rawType) }
        let frame: MeshFrame
        switch type {
        case .hello:
            guard let version: UInt8 = body.readInteger() else { throw .truncated(type) }
            let node = try readString(&body, type)
            guard let epoch: UInt64 = body.readInteger(),
                  let nonce = body.readBytes(length: MeshHello.nonceLength) else { throw .truncated(type) }
            frame = .hello(MeshHello(version: version, node: node, epoch: epoch, nonce: nonce))
        case .auth:
            guard let proof = body.readBytes(length: MeshAuth.proofLength),
                  let epoch: UInt64 = body.readInteger(),
                  let sequence: UInt64 = body.readInteger() else { throw .truncated(type) }
            frame = .auth(MeshAuth(proof: proof, resumeEpoch: epoch, resumeSequence: sequence))
        case .snapshot:
            guard let count: UInt32 = body.readInteger() else { throw .truncated(type) }
            // Each room takes at least its 2-byte length: a count beyond that is a lie.
            guard Int(count) <= body.readableBytes / 2 else { throw .truncated(type) }
            var rooms: [String] = []
            rooms.reserveCapacity(Int(count))
            for _ in 0..<count { rooms.append(try readString(&body, type)) }
            frame = .snapshot(rooms)
        case .sub:
            frame = .sub(try readString(&body, type))
        case .unsub:
            frame = .unsub(try readString(&body, type))
        case .pub:
            guard let sequence: UInt64 = body.readInteger() else { throw .truncated(type) }
            let room = try readString(&body, type)
            let payload = body.readSlice(length: body.readableBytes)!
            return .pub(sequence: sequence, room: room, payload: payload)
        case .pubStamped:
            guard let sequence: UInt64 = body.readInteger(),
                  let originSequence: UInt64 = body.readInteger() else { throw .truncated(type) }
            let room = try readString(&body, type)
            let payload = body.readSlice(length: body.readableBytes)!
            return .pubStamped(sequence: sequence, originSequence: originSequence, room: room, payload: payload)
        case .ack, .ping, .pong:
            guard let value: UInt64 = body.readInteger() else { throw .truncated(type) }
            frame = type == .ack ? .ack(value) : (type == .ping ? .ping(value) : .pong(value))
        case .goodbye:
            frame = .goodbye(try readString(&body, type))
        case .session:
            frame = .session(try readSession(&body))
        case .relayRequest:
            // The body is the rest of the frame: returned before the trailing-bytes check.
            return try readRelayRequest(&body)
        case .relayReply:
            return try readRelayReply(&body)
        case .relayFrame:
            return try readRelayFrame(&body)
        case .relayClose:
            guard let id: UInt64 = body.readInteger(), let code: UInt16 = body.readInteger() else { throw .truncated(type) }
            frame = .relayClose(id: id, code: code)
        }
        guard body.readableBytes == 0 else { throw .trailingBytes(type) }
        return frame
    }

    static func readString(_ body: inout ByteBuffer, _ type: MeshFrame.FrameType) throws(MeshFrameError) -> String {
        guard let length: UInt16 = body.readInteger(), let bytes = body.readBytes(length: Int(length)) else {
            throw .truncated(type)
        }
        guard let text = String(validating: bytes, as: UTF8.self) else { throw .invalidUTF8(type) }
        return text
    }
}
