/// Collects the binary attachments that follow a BINARY_EVENT / BINARY_ACK header and puts each
/// one where its `{"_placeholder":true,"num":N}` stood.
public struct BinaryReassembler: Sendable {
    private var header: SocketPacket?
    private var buffers: [[UInt8]] = []

    public init() {}

    public var isWaitingForAttachments: Bool { header != nil }

    /// Feeds a decoded packet. Returns it at once if it has no attachments; otherwise holds it.
    public mutating func receive(_ packet: SocketPacket) throws(SocketIOError) -> SocketPacket? {
        guard header == nil else { throw .expectedBinaryAttachment }
        guard packet.attachments > 0 else {
            return packet.type == .binaryEvent || packet.type == .binaryAck ? try Self.reconstruct(packet, []) : packet
        }
        header = packet
        buffers = []
        return nil
    }

    /// Feeds one binary attachment. Returns the complete packet after the last one.
    public mutating func receive(attachment: [UInt8]) throws(SocketIOError) -> SocketPacket? {
        guard let pending = header else { throw .unexpectedBinaryAttachment }
        buffers.append(attachment)
        guard buffers.count == pending.attachments else { return nil }
        header = nil
        defer { buffers = [] }
        return try Self.reconstruct(pending, buffers)
    }

    static func reconstruct(_ packet: SocketPacket, _ attachments: [[UInt8]]) throws(SocketIOError) -> SocketPacket {
        var complete = packet
        if let data = packet.data {
            complete.data = try replacePlaceholders(data, attachments)
        }
        return complete
    }

    private static func replacePlaceholders(_ value: JSONValue, _ attachments: [[UInt8]]) throws(SocketIOError) -> JSONValue {
        switch value {
        case .object(let members):
            if value["_placeholder"] == .bool(true) {
                // Compared as a Double: converting an out-of-range num like 1e300 to Int would trap.
                guard case .number(let num)? = value["num"], num >= 0, num == num.rounded(),
                      num < Double(attachments.count) else { throw .invalidPlaceholder }
                return .binary(attachments[Int(num)])
            }
            var replaced: [(String, JSONValue)] = []
            for member in members { replaced.append((member.0, try replacePlaceholders(member.1, attachments))) }
            return .object(replaced)
        case .array(let elements):
            var replaced: [JSONValue] = []
            for element in elements { replaced.append(try replacePlaceholders(element, attachments)) }
            return .array(replaced)
        default:
            return value
        }
    }
}
