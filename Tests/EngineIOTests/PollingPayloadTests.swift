import Testing
@testable import EngineIO

@Suite("PollingPayload")
struct PollingPayloadTests {
    @Test func separatorIsTheRecordSeparatorByte() {
        #expect(Array(String(PollingPayload.separator).utf8) == [0x1E])
    }

    @Test func onePacketEncodesWithoutSeparator() {
        #expect(PollingPayload.encode([.message("hello")]) == "4hello")
        #expect(PollingPayload.encode([EnginePacket(.noop)]) == "6")
    }

    @Test func manyPacketsAreJoinedByRecordSeparator() {
        let body = PollingPayload.encode([.message("hello"), EnginePacket(.ping), .message(#"2["say",{"text":"hi"}]"#)])
        #expect(body == "4hello\u{1E}2\u{1E}42[\"say\",{\"text\":\"hi\"}]")
    }

    @Test func binaryPacketsTravelAsBPlusBase64BesideText() {
        let body = PollingPayload.encode([.message("hi"), .binaryMessage([1, 2, 3, 4]), EnginePacket(.noop)])
        #expect(body == "4hi\u{1E}bAQIDBA==\u{1E}6")
    }

    @Test func emptyPacketListEncodesAsEmptyBody() {
        #expect(PollingPayload.encode([]) == "")
    }

    @Test func pollingPayloadSplitsOnRecordSeparator() throws {
        #expect(try PollingPayload.decode("4hello") == [.message("hello")])
        #expect(try PollingPayload.decode("4hello\u{1E}2\u{1E}3probe")
            == [.message("hello"), EnginePacket(.ping), EnginePacket(.pong, .text("probe"))])
    }

    @Test func binaryMixedWithTextDecodesInOrder() throws {
        let packets = try PollingPayload.decode("4hi\u{1E}bAQIDBA==\u{1E}b\u{1E}6")
        #expect(packets == [.message("hi"), .binaryMessage([1, 2, 3, 4]), .binaryMessage([]), EnginePacket(.noop)])
    }

    @Test func encodeThenDecodeRoundTrips() throws {
        let packets: [EnginePacket] = [
            .message("héllo 👋"), .binaryMessage(Array(0...255)), EnginePacket(.close), .message(""),
            EnginePacket(.upgrade), .message(#"2["x",{"a":[1,2,3]}]"#),
        ]
        #expect(try PollingPayload.decode(PollingPayload.encode(packets)) == packets)
    }

    @Test func separatorNextToACombiningMarkStillSplits() throws {
        // U+001E is a grapheme of its own, so a following combining mark cannot hide it.
        #expect(try PollingPayload.decode("4a\u{1E}4\u{301}b") == [.message("a"), .message("\u{301}b")])
    }

    @Test func emptyBodyIsRejected() {
        #expect(throws: EngineIOError.emptyPacket) { try PollingPayload.decode("") }
    }

    @Test(arguments: ["4a\u{1E}\u{1E}4b", "4a\u{1E}", "\u{1E}4a", "\u{1E}"])
    func emptyPartIsRejected(body: String) {
        #expect(throws: EngineIOError.emptyPacket) { try PollingPayload.decode(body) }
    }

    @Test func unknownTypeInAnyPartIsRejected() {
        #expect(throws: EngineIOError.unknownPacketType(UInt8(ascii: "8"))) { try PollingPayload.decode("4a\u{1E}8b") }
    }

    @Test func invalidBase64InAnyPartIsRejected() {
        #expect(throws: EngineIOError.invalidBase64) { try PollingPayload.decode("4a\u{1E}bAQID=") }
    }

    @Test func packetCountUpToTheLimitIsAccepted() throws {
        let body = Array(repeating: "6", count: 3).joined(separator: "\u{1E}")
        #expect(try PollingPayload.decode(body, maxPackets: 3).count == 3)
    }

    @Test func tooManyPacketsAreRejected() {
        let body = Array(repeating: "6", count: 4).joined(separator: "\u{1E}")
        #expect(throws: EngineIOError.tooManyPackets(limit: 3)) { try PollingPayload.decode(body, maxPackets: 3) }
    }

    @Test func defaultLimitIsTenThousandPackets() throws {
        let ok = Array(repeating: "6", count: 10_000).joined(separator: "\u{1E}")
        #expect(try PollingPayload.decode(ok).count == 10_000)
        let over = ok + "\u{1E}6"
        #expect(throws: EngineIOError.tooManyPackets(limit: 10_000)) { try PollingPayload.decode(over) }
    }
}
