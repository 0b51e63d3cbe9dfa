import NIOCore
import Testing
@testable import RedisFanout

/// Commands go out as RESP arrays of bulk strings, byte for byte as redis-cli sends them.
@Suite struct RESPEncoderTests {
    func wire(_ parts: [RESPArgument]) -> String {
        String(decoding: bytes(RESPEncoder.command(parts)), as: UTF8.self)
    }

    @Test func publishCommandBytes() {
        #expect(bytes(RESPEncoder.command(["PUBLISH", "r1", "hi"])) == Array("*3\r\n$7\r\nPUBLISH\r\n$2\r\nr1\r\n$2\r\nhi\r\n".utf8))
    }

    @Test func setupAndPubSubCommands() {
        #expect(wire(["AUTH", "s3cret"]) == "*2\r\n$4\r\nAUTH\r\n$6\r\ns3cret\r\n")
        #expect(wire(["AUTH", "alice", "pw"]) == "*3\r\n$4\r\nAUTH\r\n$5\r\nalice\r\n$2\r\npw\r\n")
        #expect(wire(["SELECT", "3"]) == "*2\r\n$6\r\nSELECT\r\n$1\r\n3\r\n")
        #expect(wire(["SUBSCRIBE", "r1", "chat:r2"]) == "*3\r\n$9\r\nSUBSCRIBE\r\n$2\r\nr1\r\n$7\r\nchat:r2\r\n")
        #expect(wire(["UNSUBSCRIBE", "r1"]) == "*2\r\n$11\r\nUNSUBSCRIBE\r\n$2\r\nr1\r\n")
        #expect(wire(["PING"]) == "*1\r\n$4\r\nPING\r\n")
        #expect(wire(["QUIT"]) == "*1\r\n$4\r\nQUIT\r\n")
    }

    @Test func publishOfTheOriginalSayJSON() {
        let json = #"{"event":"broadcast_say","data":{"username":"carol","text":"hi"}}"#
        #expect(json.utf8.count == 65)
        #expect(wire(["PUBLISH", "r1", .string(json)]) == "*3\r\n$7\r\nPUBLISH\r\n$2\r\nr1\r\n$65\r\n\(json)\r\n")
    }

    @Test func emptyArgument() {
        #expect(wire(["PUBLISH", "r1", ""]) == "*3\r\n$7\r\nPUBLISH\r\n$2\r\nr1\r\n$0\r\n\r\n")
    }

    @Test func emptyCommand() {
        #expect(wire([]) == "*0\r\n")
    }

    @Test func lengthsAreUTF8BytesNotCharacters() {
        #expect(wire(["PUBLISH", "é", "hé"]) == "*3\r\n$7\r\nPUBLISH\r\n$2\r\né\r\n$3\r\nhé\r\n")
        #expect(wire(["PUBLISH", "日本", "💬"]) == "*3\r\n$7\r\nPUBLISH\r\n$6\r\n日本\r\n$4\r\n💬\r\n")
        // A decomposed accent: 2 characters, 1 grapheme, 3 bytes.
        #expect(wire(["e\u{301}"]) == "*1\r\n$3\r\ne\u{301}\r\n")
        // The bytes themselves, not only the text, are what they should be.
        #expect(bytes(RESPEncoder.command(["💬"])) == [0x2A, 0x31, 0x0D, 0x0A, 0x24, 0x34, 0x0D, 0x0A, 0xF0, 0x9F, 0x92, 0xAC, 0x0D, 0x0A])
    }

    @Test func argumentsWithCRLFAreBinarySafe() {
        #expect(wire(["PUBLISH", "r1", "a\r\nb"]) == "*3\r\n$7\r\nPUBLISH\r\n$2\r\nr1\r\n$4\r\na\r\nb\r\n")
    }

    @Test func byteArguments() {
        let payload: [UInt8] = [0x00, 0x0D, 0x0A, 0xFF]
        let out = bytes(RESPEncoder.command(["PUBLISH", "r1", .bytes(buffer(payload))]))
        #expect(out == Array("*3\r\n$7\r\nPUBLISH\r\n$2\r\nr1\r\n$4\r\n".utf8) + payload + [0x0D, 0x0A])
    }

    @Test func byteArgumentUsesOnlyTheReadableBytes() {
        var payload = buffer("xxhello")
        payload.moveReaderIndex(forwardBy: 2)
        #expect(wire(["ECHO", .bytes(payload)]) == "*2\r\n$4\r\nECHO\r\n$5\r\nhello\r\n")
    }

    @Test func writeCommandAppendsToWhatIsInTheBuffer() {
        var out = buffer("")
        RESPEncoder.writeCommand(["PING"], into: &out)
        RESPEncoder.writeCommand(["PUBLISH", "r1", "hi"], into: &out)
        #expect(String(buffer: out) == "*1\r\n$4\r\nPING\r\n*3\r\n$7\r\nPUBLISH\r\n$2\r\nr1\r\n$2\r\nhi\r\n")
    }

    @Test func commandsDecodeAsArraysOfBulkStrings() throws {
        let parts: [RESPArgument] = ["PUBLISH", "chat:é", .string(#"{"event":"join","data":{"username":"zoë"}}"#)]
        var stream = RESPEncoder.command(parts)
        let decoded = try RESPDecoder().next(from: &stream)
        #expect(decoded == .array([bulk("PUBLISH"), bulk("chat:é"), bulk(#"{"event":"join","data":{"username":"zoë"}}"#)]))
        #expect(stream.readableBytes == 0)
    }

    // MARK: writeValue

    @Test func writeValueExactBytes() {
        #expect(encoded(.simpleString("OK")) == Array("+OK\r\n".utf8))
        #expect(encoded(.error("ERR x")) == Array("-ERR x\r\n".utf8))
        #expect(encoded(.integer(-7)) == Array(":-7\r\n".utf8))
        #expect(encoded(.integer(.max)) == Array(":9223372036854775807\r\n".utf8))
        #expect(encoded(.integer(.min)) == Array(":-9223372036854775808\r\n".utf8))
        #expect(encoded(bulk("hé")) == Array("$3\r\nhé\r\n".utf8))
        #expect(encoded(bulk("")) == Array("$0\r\n\r\n".utf8))
        #expect(encoded(.bulkString(nil)) == Array("$-1\r\n".utf8))
        #expect(encoded(.array(nil)) == Array("*-1\r\n".utf8))
        #expect(encoded(.array([])) == Array("*0\r\n".utf8))
        #expect(encoded(.array([.integer(1), .array([bulk("a")])])) == Array("*2\r\n:1\r\n*1\r\n$1\r\na\r\n".utf8))
    }

    @Test func writeValueRoundTripsThroughTheDecoder() throws {
        let decoder = RESPDecoder()
        for value in sampleValues {
            var stream = buffer(encoded(value))
            #expect(try decoder.next(from: &stream) == value)
            #expect(stream.readableBytes == 0)
        }
    }

    @Test func writeValueReproducesTheSampleWire() {
        // The hand-written samples are canonical RESP, so encoding gives back the same bytes.
        for (wire, value) in sampleStream {
            #expect(encoded(value) == Array(wire.utf8), "\(wire.debugDescription)")
        }
    }
}
