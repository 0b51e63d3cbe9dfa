import ChatCore
import NIOCore

/// The bodies of the relay frames (types 13 to 16, docs/RELAY.md):
///
///     RELAY_REQUEST  u64 id | u8 kind (1 GET, 2 POST, 3 WebSocket) | string sid | string origin | body (rest)
///     RELAY_REPLY    u64 id | u16 status | string content type | body (rest)
///     RELAY_FRAME    u64 id | u8 kind (1 text, 2 binary, 3 framed) | payload (rest)
///     RELAY_CLOSE    u64 id | u16 code
///
/// The sid is 1 to 64 bytes (the server makes 20), the origin at most 1024 (empty: the client
/// sent none; an empty header says nothing either), the content type at most 256 and the
/// status 100 to 599. A value outside these bounds, or an unknown kind, closes the link like
/// any malformed frame: only a broken or hostile peer sends one.
extension MeshFrameCodec {
    public static let maxRelayOriginLength = 1024
    public static let maxRelayContentTypeLength = 256

    /// Whether `request` fits RELAY_REQUEST's bounds; the relay refuses one that does not (a
    /// client's Origin header past 1024 bytes), since the owner would close the link.
    public static func canEncode(_ request: RelayedRequest) -> Bool {
        (1...maxSessionIDLength).contains(request.sid.utf8.count)
            && (request.origin?.utf8.count ?? 0) <= maxRelayOriginLength
    }

    static func writeRelayRequest(id: UInt64, _ request: RelayedRequest, into buffer: inout ByteBuffer) {
        buffer.writeInteger(id)
        buffer.writeInteger(request.kind.rawValue)
        writeString(request.sid, into: &buffer, limit: maxSessionIDLength)
        writeString(request.origin ?? "", into: &buffer, limit: maxRelayOriginLength)
        buffer.writeImmutableBuffer(request.body)
    }

    static func writeRelayReply(id: UInt64, _ reply: RelayReply, into buffer: inout ByteBuffer) {
        buffer.writeInteger(id)
        buffer.writeInteger(reply.status)
        writeString(reply.contentType, into: &buffer, limit: maxRelayContentTypeLength)
        buffer.writeImmutableBuffer(reply.body)
    }

    static func readRelayRequest(_ body: inout ByteBuffer) throws(MeshFrameError) -> MeshFrame {
        guard let id: UInt64 = body.readInteger(), let rawKind: UInt8 = body.readInteger() else {
            throw .truncated(.relayRequest)
        }
        guard let kind = RelayKind(rawValue: rawKind) else {
            throw .invalidField("relay frame: request kind \(rawKind) (1 GET, 2 POST, 3 WebSocket)")
        }
        let sid = try readString(&body, .relayRequest)
        guard (1...maxSessionIDLength).contains(sid.utf8.count) else {
            throw .invalidField("relay frame: sid of \(sid.utf8.count) bytes (1 to \(maxSessionIDLength))")
        }
        let origin = try readString(&body, .relayRequest)
        guard origin.utf8.count <= maxRelayOriginLength else {
            throw .invalidField("relay frame: origin of \(origin.utf8.count) bytes (at most \(maxRelayOriginLength))")
        }
        let request = RelayedRequest(kind: kind, sid: sid, origin: origin.isEmpty ? nil : origin,
                                     body: body.readSlice(length: body.readableBytes)!)
        return .relayRequest(id: id, request: request)
    }

    static func readRelayReply(_ body: inout ByteBuffer) throws(MeshFrameError) -> MeshFrame {
        guard let id: UInt64 = body.readInteger(), let status: UInt16 = body.readInteger() else {
            throw .truncated(.relayReply)
        }
        guard (100...599).contains(status) else { throw .invalidField("relay frame: status \(status) (100 to 599)") }
        let contentType = try readString(&body, .relayReply)
        guard contentType.utf8.count <= maxRelayContentTypeLength else {
            throw .invalidField("relay frame: content type of \(contentType.utf8.count) bytes (at most \(maxRelayContentTypeLength))")
        }
        let reply = RelayReply(status: status, contentType: contentType, body: body.readSlice(length: body.readableBytes)!)
        return .relayReply(id: id, reply: reply)
    }

    static func readRelayFrame(_ body: inout ByteBuffer) throws(MeshFrameError) -> MeshFrame {
        guard let id: UInt64 = body.readInteger(), let rawKind: UInt8 = body.readInteger() else {
            throw .truncated(.relayFrame)
        }
        guard let kind = RelayFrameKind(rawValue: rawKind) else {
            throw .invalidField("relay frame: frame kind \(rawKind) (1 text, 2 binary, 3 framed)")
        }
        return .relayFrame(id: id, kind: kind, payload: body.readSlice(length: body.readableBytes)!)
    }
}
