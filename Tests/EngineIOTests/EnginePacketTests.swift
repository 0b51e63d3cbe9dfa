import Testing
@testable import EngineIO

@Suite("EnginePacket")
struct EnginePacketTests {
    @Test(arguments: [
        (EnginePacket.PacketType.open, "0"),
        (.close, "1"),
        (.ping, "2"),
        (.pong, "3"),
        (.message, "4"),
        (.upgrade, "5"),
        (.noop, "6"),
    ])
    func everyPacketTypeEncodesAsItsDigit(type: EnginePacket.PacketType, digit: String) throws {
        #expect(EnginePacket(type).encodedText() == digit)
        #expect(EnginePacket(type, .text("xyz")).encodedText() == digit + "xyz")
        #expect(EnginePacket(type).encodedForPolling() == digit)
        let decoded = try EnginePacket.decode(text: Substring(digit + "xyz"))
        #expect(decoded == EnginePacket(type, .text("xyz")))
        #expect(try EnginePacket.decode(text: Substring(digit)) == EnginePacket(type, .text("")))
    }

    @Test func packetTypesAreExactlyTheSevenOfEngineIOv4() {
        #expect(EnginePacket.PacketType.allCases.map(\.rawValue) == [0, 1, 2, 3, 4, 5, 6])
    }

    @Test func pingProbeAndPongProbeEncodeWithTheirPayload() throws {
        #expect(EnginePacket(.ping, .text("probe")).encodedText() == "2probe")
        #expect(EnginePacket(.pong, .text("probe")).encodedText() == "3probe")
        #expect(try EnginePacket.decode(text: "2probe") == EnginePacket(.ping, .text("probe")))
    }

    @Test func messageHelperEncodesSocketIOTextBehindAFour() throws {
        #expect(EnginePacket.message(#"2["say",{"text":"hi"}]"#).encodedText() == #"42["say",{"text":"hi"}]"#)
        #expect(try EnginePacket.decode(text: "40") == .message("0"))
    }

    @Test func nonASCIIMessagePayloadRoundTripsByteForByte() throws {
        let text = "héllo 👋 日本"
        let encoded = try #require(EnginePacket.message(text).encodedText())
        #expect(Array(encoded.utf8) == [UInt8(ascii: "4")] + Array(text.utf8))
        #expect(try EnginePacket.decode(text: Substring(encoded)) == .message(text))
    }

    @Test func decodeDropsOnlyTheTypeByteEvenBeforeACombiningMark() throws {
        // "4" + U+0301 is one grapheme; the payload must still keep the combining mark.
        let packet = try EnginePacket.decode(text: "4\u{301}hi")
        #expect(packet == .message("\u{301}hi"))
        #expect(try EnginePacket.decode(text: "4\u{FE0F}\u{20E3}") == .message("\u{FE0F}\u{20E3}"))
    }

    @Test func emptyTextPacketIsRejected() {
        #expect(throws: EngineIOError.emptyPacket) { try EnginePacket.decode(text: "") }
        #expect(throws: EngineIOError.emptyPacket) { try EnginePacket.decode(pollingPart: "") }
    }

    @Test(arguments: [
        ("7", UInt8(ascii: "7")),
        ("9hello", UInt8(ascii: "9")),
        ("/", UInt8(ascii: "/")),
        ("xyz", UInt8(ascii: "x")),
        (" 4", UInt8(ascii: " ")),
        ("é", UInt8(0xC3)),
    ])
    func unknownTypeByteIsRejectedWithThatByte(text: String, byte: UInt8) {
        #expect(throws: EngineIOError.unknownPacketType(byte)) { try EnginePacket.decode(text: Substring(text)) }
        #expect(throws: EngineIOError.unknownPacketType(byte)) { try EnginePacket.decode(pollingPart: Substring(text)) }
    }

    @Test func websocketTextFrameCannotCarryBase64Binary() {
        #expect(throws: EngineIOError.unknownPacketType(UInt8(ascii: "b"))) { try EnginePacket.decode(text: "bAQID") }
    }

    @Test func binaryPacketHasNoTextFormAndPollsAsBPlusBase64() {
        let packet = EnginePacket.binaryMessage([1, 2, 3, 4])
        #expect(packet.isBinary)
        #expect(packet.type == .message)
        #expect(packet.encodedText() == nil)
        #expect(packet.encodedForPolling() == "bAQIDBA==")
        #expect(EnginePacket.binaryMessage([]).encodedForPolling() == "b")
        #expect(!EnginePacket.message("x").isBinary)
    }

    @Test func binaryPollingPartDecodesToBinaryMessage() throws {
        #expect(try EnginePacket.decode(pollingPart: "bAQIDBA==") == .binaryMessage([1, 2, 3, 4]))
        #expect(try EnginePacket.decode(pollingPart: "b") == .binaryMessage([]))
        #expect(try EnginePacket.decode(pollingPart: "4text") == .message("text"))
    }

    @Test func binaryPollingPartRoundTripsEveryByteValue() throws {
        let bytes = (0...255).map { UInt8($0) }
        for length in [0, 1, 2, 3, 4, 5, 255, 256] {
            let packet = EnginePacket.binaryMessage(Array(bytes.prefix(length)))
            #expect(try EnginePacket.decode(pollingPart: Substring(packet.encodedForPolling())) == packet)
        }
    }

    @Test(arguments: [
        // bad length
        "bAQIDBA", "bA", "bAQIDB", "bZm9vY",
        // bad padding
        "bZg=",       // a lone '=' where two are needed makes a bad length
        "bZ===",      // three '=' in one quad
        "b====",      // only padding
        "bZg=a",      // padding followed by data in the same quad
        "bZ=g=",      // padding in the second place
        "bZg==Zm9v",  // padding before the last quad
        "bZm9=Zg==",  // padding in a middle quad
        // bad characters
        "bZm9*", "bZm9-", "bZm9_", "bZm 9", "bZm9\n", "bZm\u{E9}",
    ])
    func invalidBase64BinaryPartIsRejected(part: String) {
        #expect(throws: EngineIOError.invalidBase64) { try EnginePacket.decode(pollingPart: Substring(part)) }
    }

    @Test func errorDescriptionsNameTheDefect() {
        #expect(EngineIOError.emptyPacket.description == "empty Engine.IO packet")
        #expect(EngineIOError.unknownPacketType(55).description == "unknown Engine.IO packet type byte 55")
        #expect(EngineIOError.invalidBase64.description == "invalid base64 in binary packet")
        #expect(EngineIOError.payloadTooLarge(limit: 10).description == "payload exceeds maxPayload (10 bytes)")
        #expect(EngineIOError.tooManyPackets(limit: 3).description == "payload holds more than 3 packets")
    }
}
