/// One Socket.IO v5 packet: `<type>[<attachments>-][<namespace>,][<ack id>][<JSON data>]`.
public struct SocketPacket: Equatable, Sendable {
    public enum PacketType: UInt8, Sendable, CaseIterable {
        case connect = 0, disconnect, event, ack, connectError, binaryEvent, binaryAck
    }

    public var type: PacketType
    public var namespace: String
    public var ackID: Int?
    public var data: JSONValue?
    /// Binary attachments that follow a BINARY_EVENT / BINARY_ACK header.
    public var attachments: Int

    public init(type: PacketType, namespace: String = "/", ackID: Int? = nil, data: JSONValue? = nil, attachments: Int = 0) {
        self.type = type
        self.namespace = namespace
        self.ackID = ackID
        self.data = data
        self.attachments = attachments
    }

    public static func event(_ name: String, _ args: [JSONValue], namespace: String = "/", ackID: Int? = nil) -> SocketPacket {
        SocketPacket(type: .event, namespace: namespace, ackID: ackID, data: .array([.string(name)] + args))
    }

    public static func ack(_ id: Int, _ args: [JSONValue], namespace: String = "/") -> SocketPacket {
        SocketPacket(type: .ack, namespace: namespace, ackID: id, data: .array(args))
    }

    /// The event name and arguments of an EVENT / BINARY_EVENT (after reassembly).
    public var eventNameAndArguments: (name: String, arguments: [JSONValue])? {
        guard type == .event || type == .binaryEvent, case .array(let elements)? = data,
              let name = elements.first?.stringValue else { return nil }
        return (name, Array(elements.dropFirst()))
    }
}

/// Why a Socket.IO packet was rejected; one case per defect.
public enum SocketIOError: Error, Equatable, Sendable, CustomStringConvertible {
    case emptyPacket
    case unknownPacketType(Character)
    case invalidAttachmentCount
    case tooManyAttachments(limit: Int)
    case invalidNamespace
    case invalidAckID
    case invalidJSON(JSONParseError)
    case invalidPayload(SocketPacket.PacketType)
    case unexpectedBinaryAttachment
    case expectedBinaryAttachment
    case invalidPlaceholder

    public var description: String {
        switch self {
        case .emptyPacket: return "empty Socket.IO packet"
        case .unknownPacketType(let c): return "unknown Socket.IO packet type '\(c)'"
        case .invalidAttachmentCount: return "invalid binary attachment count"
        case .tooManyAttachments(let limit): return "more than \(limit) binary attachments"
        case .invalidNamespace: return "invalid namespace"
        case .invalidAckID: return "invalid ack id"
        case .invalidJSON(let error): return "invalid JSON payload: \(error)"
        case .invalidPayload(let type): return "invalid payload for packet type \(type)"
        case .unexpectedBinaryAttachment: return "binary attachment without a binary packet"
        case .expectedBinaryAttachment: return "text packet while binary attachments are pending"
        case .invalidPlaceholder: return "binary placeholder refers to a missing attachment"
        }
    }
}
