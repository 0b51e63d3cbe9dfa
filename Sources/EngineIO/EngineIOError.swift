/// Why an Engine.IO packet, payload or request was rejected. Each case names one defect so that
/// the peer (and the log) gets a specific reason, never a crash.
public enum EngineIOError: Error, Equatable, Sendable, CustomStringConvertible {
    case emptyPacket
    case unknownPacketType(UInt8)
    case invalidBase64
    case payloadTooLarge(limit: Int)
    case tooManyPackets(limit: Int)

    public var description: String {
        switch self {
        case .emptyPacket: return "empty Engine.IO packet"
        case .unknownPacketType(let byte): return "unknown Engine.IO packet type byte \(byte)"
        case .invalidBase64: return "invalid base64 in binary packet"
        case .payloadTooLarge(let limit): return "payload exceeds maxPayload (\(limit) bytes)"
        case .tooManyPackets(let limit): return "payload holds more than \(limit) packets"
        }
    }
}
