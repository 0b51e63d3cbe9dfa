/// One Engine.IO v4 packet: a type and an optional payload.
///
/// Text packets travel as `<type digit><payload>`; binary payloads are always of type
/// `message` and travel raw in a WebSocket binary frame, or as `b<base64>` inside a
/// polling payload.
public struct EnginePacket: Equatable, Sendable {
    public enum PacketType: UInt8, Sendable, CaseIterable {
        case open = 0, close, ping, pong, message, upgrade, noop
    }

    public enum Payload: Equatable, Sendable {
        case text(String)
        case binary([UInt8])
    }

    public var type: PacketType
    public var payload: Payload

    public init(_ type: PacketType, _ payload: Payload = .text("")) {
        self.type = type
        self.payload = payload
    }

    public static func message(_ text: String) -> EnginePacket { EnginePacket(.message, .text(text)) }
    public static func binaryMessage(_ bytes: [UInt8]) -> EnginePacket { EnginePacket(.message, .binary(bytes)) }

    public var isBinary: Bool {
        if case .binary = payload { return true }
        return false
    }

    /// The text form used in a WebSocket text frame. Binary packets have no text form; code
    /// that holds a text payload uses `encodeText(_:_:)`, which cannot fail.
    public func encodedText() -> String? {
        guard case .text(let text) = payload else { return nil }
        return Self.encodeText(type, text)
    }

    /// The text form of a packet of `type` with a text payload: `<type digit><text>`.
    public static func encodeText(_ type: PacketType, _ text: String = "") -> String {
        String(UnicodeScalar(UInt8(ascii: "0") + type.rawValue)) + text
    }

    /// The form used inside a polling payload: text as above, binary as `b<base64>`.
    public func encodedForPolling() -> String {
        switch payload {
        case .text(let text):
            return Self.encodeText(type, text)
        case .binary(let bytes):
            return "b" + Base64.encode(bytes)
        }
    }

    /// Decodes a WebSocket text frame or one text packet of a polling payload.
    public static func decode(text: Substring) throws(EngineIOError) -> EnginePacket {
        guard let first = text.utf8.first else { throw .emptyPacket }
        guard first >= UInt8(ascii: "0"), first <= UInt8(ascii: "6"),
              let type = PacketType(rawValue: first - UInt8(ascii: "0"))
        else { throw .unknownPacketType(first) }
        // Drop the type byte, not the first Character: a combining mark right after the digit
        // would otherwise join it in one grapheme and vanish from the payload.
        return EnginePacket(type, .text(String(text[text.utf8.index(after: text.utf8.startIndex)...])))
    }

    /// Decodes one packet of a polling payload (text, or `b`-prefixed base64 binary).
    public static func decode(pollingPart part: Substring) throws(EngineIOError) -> EnginePacket {
        if part.utf8.first == UInt8(ascii: "b") {
            guard let bytes = Base64.decode(part.utf8.dropFirst()) else { throw .invalidBase64 }
            return .binaryMessage(bytes)
        }
        return try decode(text: part)
    }
}
