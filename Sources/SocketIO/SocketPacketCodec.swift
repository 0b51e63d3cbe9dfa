/// Encodes and decodes Socket.IO v5 packets in their text form, with the rules of the official
/// parser: a namespace starts with `/` and ends at `,`; the ack id is the digits that follow;
/// the payload must fit the packet type (CONNECT: object or nothing, EVENT: non-empty array
/// whose first element is the name, ACK: array, CONNECT_ERROR: object or string).
public enum SocketPacketCodec {
    public static let maxAttachments = 16
    /// JavaScript's Number.MAX_SAFE_INTEGER: ack ids above it cannot round-trip a JS client.
    public static let maxAckID = 9_007_199_254_740_991

    public static func encode(_ packet: SocketPacket) -> String {
        var out = String(packet.type.rawValue)
        if packet.type == .binaryEvent || packet.type == .binaryAck {
            out += "\(packet.attachments)-"
        }
        if packet.namespace != "/" {
            out += packet.namespace + ","
        }
        if let id = packet.ackID {
            out += String(id)
        }
        if let data = packet.data {
            JSONWriter.write(data, into: &out)
        }
        return out
    }

    /// Encodes a packet whose data may hold `.binary` values: they become placeholders and
    /// are returned, in order, as the attachments to send after the header.
    public static func encodeWithAttachments(_ packet: SocketPacket) -> (header: String, attachments: [[UInt8]]) {
        guard let data = packet.data else { return (encode(packet), []) }
        var attachments: [[UInt8]] = []
        let replaced = replaceBinary(data, into: &attachments)
        guard !attachments.isEmpty else { return (encode(packet), []) }
        var header = packet
        header.data = replaced
        header.attachments = attachments.count
        if header.type == .event { header.type = .binaryEvent }
        if header.type == .ack { header.type = .binaryAck }
        return (encode(header), attachments)
    }

    private static func replaceBinary(_ value: JSONValue, into attachments: inout [[UInt8]]) -> JSONValue {
        switch value {
        case .binary(let bytes):
            attachments.append(bytes)
            return .object([("_placeholder", .bool(true)), ("num", .number(Double(attachments.count - 1)))])
        case .array(let elements):
            return .array(elements.map { replaceBinary($0, into: &attachments) })
        case .object(let members):
            return .object(members.map { ($0.0, replaceBinary($0.1, into: &attachments)) })
        default:
            return value
        }
    }

    public static func decode(_ text: Substring) throws(SocketIOError) -> SocketPacket {
        let utf8 = Array(text.utf8)
        guard let first = utf8.first else { throw .emptyPacket }
        guard first >= UInt8(ascii: "0"), first <= UInt8(ascii: "6"),
              let type = SocketPacket.PacketType(rawValue: first - UInt8(ascii: "0"))
        else { throw .unknownPacketType(Character(Unicode.Scalar(first))) }
        var index = 1
        var packet = SocketPacket(type: type)

        if type == .binaryEvent || type == .binaryAck {
            let start = index
            while index < utf8.count, utf8[index] != UInt8(ascii: "-") {
                guard isDigit(utf8[index]), index - start < 3 else { throw .invalidAttachmentCount }
                index += 1
            }
            guard index < utf8.count, index > start,
                  let count = Int(String(decoding: utf8[start..<index], as: UTF8.self))
            else { throw .invalidAttachmentCount }
            guard count <= maxAttachments else { throw .tooManyAttachments(limit: maxAttachments) }
            packet.attachments = count
            index += 1 // '-'
        }

        if index < utf8.count, utf8[index] == UInt8(ascii: "/") {
            let start = index
            while index < utf8.count, utf8[index] != UInt8(ascii: ",") { index += 1 }
            let namespace = String(decoding: utf8[start..<index], as: UTF8.self)
            guard namespace.utf8.count <= 256 else { throw .invalidNamespace }
            packet.namespace = namespace
            if index < utf8.count { index += 1 } // ','
        }

        if index < utf8.count, isDigit(utf8[index]) {
            let start = index
            while index < utf8.count, isDigit(utf8[index]) { index += 1 }
            guard index - start <= 16, let id = Int(String(decoding: utf8[start..<index], as: UTF8.self)), id <= maxAckID else {
                throw .invalidAckID
            }
            packet.ackID = id
        }

        if index < utf8.count {
            let payload = text.utf8.index(text.utf8.startIndex, offsetBy: index)
            do {
                packet.data = try JSONParser.parse(text[payload...])
            } catch {
                throw .invalidJSON(error)
            }
        }

        guard payloadFits(packet) else { throw .invalidPayload(type) }
        return packet
    }

    private static func payloadFits(_ packet: SocketPacket) -> Bool {
        switch packet.type {
        case .connect:
            return packet.data == nil || packet.data!.isObject
        case .disconnect:
            return packet.data == nil
        case .connectError:
            guard let data = packet.data else { return false }
            return data.isObject || data.stringValue != nil
        case .event, .binaryEvent:
            guard case .array(let elements)? = packet.data, let first = elements.first else { return false }
            if case .string = first { return true }
            if case .number = first { return true }
            return false
        case .ack, .binaryAck:
            guard case .array? = packet.data else { return false }
            return true
        }
    }

    private static func isDigit(_ byte: UInt8) -> Bool { byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") }
}
