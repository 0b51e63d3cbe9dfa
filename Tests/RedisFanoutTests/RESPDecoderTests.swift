import NIOCore
import Testing
@testable import RedisFanout

/// Every RESP2 type, decoded from bytes written by hand as Redis sends them.
@Suite struct RESPDecoderTests {
    /// Decodes `text` as exactly one value that uses every byte.
    func value(_ text: String, _ decoder: RESPDecoder = RESPDecoder()) throws -> RESPValue? {
        let (value, left) = try decodeOne(text, decoder)
        #expect(left == 0, "\(left) bytes left after \(text.debugDescription)")
        return value
    }

    // MARK: Simple strings and errors

    @Test func simpleString() throws {
        #expect(try value("+OK\r\n") == .simpleString("OK"))
        #expect(try value("+PONG\r\n")?.string == "PONG")
    }

    @Test func emptySimpleString() throws {
        #expect(try value("+\r\n") == .simpleString(""))
    }

    @Test func simpleStringKeepsUTF8AndSpaces() throws {
        #expect(try value("+héllo wörld 💬\r\n") == .simpleString("héllo wörld 💬"))
    }

    @Test func error() throws {
        #expect(try value("-ERR unknown command 'FOO'\r\n") == .error("ERR unknown command 'FOO'"))
        #expect(try value("-NOAUTH Authentication required.\r\n") == .error("NOAUTH Authentication required."))
        #expect(try value("-ERR unknown command 'FOO'\r\n")?.string == nil, "an error is not a string reply")
    }

    // MARK: Integers

    @Test func integers() throws {
        #expect(try value(":0\r\n") == .integer(0))
        #expect(try value(":1\r\n") == .integer(1))
        #expect(try value(":1000\r\n") == .integer(1000))
        #expect(try value(":-1\r\n") == .integer(-1))
        #expect(try value(":-42\r\n") == .integer(-42))
        #expect(try value(":007\r\n") == .integer(7))
    }

    @Test func int64Max() throws {
        #expect(try value(":9223372036854775807\r\n") == .integer(Int64.max))
        #expect(try value(":-9223372036854775807\r\n") == .integer(-Int64.max))
    }

    /// Redis integers are signed 64-bit: after `SET k -9223372036854775808`, a real
    /// redis-server 7 answers `INCRBY k 0` with `:-9223372036854775808`, which must decode.
    @Test func int64Min() {
        #expect(throws: Never.self) { try value(":-9223372036854775808\r\n") }
        #expect((try? value(":-9223372036854775808\r\n")) == .integer(Int64.min))
    }

    @Test func integerOverflowIsInvalid() {
        #expect(decodeError(":9223372036854775808\r\n") == .invalidInteger)
        #expect(decodeError(":-9223372036854775809\r\n") == .invalidInteger)
        #expect(decodeError(":99999999999999999999\r\n") == .invalidInteger)
        #expect(decodeError(":123456789012345678901\r\n") == .invalidInteger)
    }

    // MARK: Bulk strings

    @Test func bulkString() throws {
        let decoded = try value("$5\r\nhello\r\n")
        #expect(decoded == bulk("hello"))
        #expect(decoded?.string == "hello")
        #expect(decoded?.bytes.map(bytes) == Array("hello".utf8))
    }

    @Test func emptyBulkString() throws {
        let decoded = try value("$0\r\n\r\n")
        #expect(decoded == .bulkString(ByteBuffer()))
        #expect(decoded?.string == "")
        #expect(decoded != .bulkString(nil), "empty is not null")
    }

    @Test func nullBulkString() throws {
        let decoded = try value("$-1\r\n")
        #expect(decoded == .bulkString(nil))
        #expect(decoded?.string == nil)
        #expect(decoded?.bytes == nil)
    }

    @Test func bulkStringIsBinarySafe() throws {
        // CRLF, a lone CR, a lone LF, NUL and bytes that are not UTF-8, all inside the body.
        let body: [UInt8] = [0x61, 0x0D, 0x0A, 0x62, 0x0D, 0x63, 0x0A, 0x00, 0xFF, 0xFE, 0x0D, 0x0A]
        let wire = Array("$\(body.count)\r\n".utf8) + body + [0x0D, 0x0A]
        let (decoded, left) = try decodeOneBytes(wire)
        #expect(left == 0)
        #expect(decoded == .bulkString(buffer(body)))
        #expect(decoded?.bytes.map(bytes) == body)
    }

    @Test func bulkStringMadeOnlyOfCRLF() throws {
        #expect(try value("$2\r\n\r\n\r\n") == bulk("\r\n"))
        #expect(try value("$4\r\n\r\n\r\n\r\n") == bulk("\r\n\r\n"))
    }

    @Test func bulkStringLengthCountsBytesNotCharacters() throws {
        #expect(try value("$8\r\nhé💬o\r\n") == bulk("hé💬o"))  // 1 + 2 + 4 + 1 bytes
    }

    // MARK: Arrays

    @Test func emptyArray() throws {
        #expect(try value("*0\r\n") == .array([]))
    }

    @Test func nullArray() throws {
        let decoded = try value("*-1\r\n")
        #expect(decoded == .array(nil))
        #expect(decoded != .array([]))
    }

    @Test func arrayOfMixedTypes() throws {
        #expect(try value("*5\r\n+OK\r\n-ERR x\r\n:-3\r\n$3\r\nfoo\r\n$-1\r\n") ==
            .array([.simpleString("OK"), .error("ERR x"), .integer(-3), bulk("foo"), .bulkString(nil)]))
    }

    @Test func nestedArrays() throws {
        #expect(try value("*3\r\n*2\r\n:1\r\n:2\r\n*0\r\n*1\r\n*1\r\n*-1\r\n") ==
            .array([.array([.integer(1), .integer(2)]), .array([]), .array([.array([.array(nil)])])]))
    }

    @Test func arraysNestedUpToTheDepthLimit() throws {
        // Eight arrays deep (depths 0...7) is the default limit and decodes.
        var expected = RESPValue.array([])
        for _ in 0..<7 { expected = .array([expected]) }
        #expect(try value(String(repeating: "*1\r\n", count: 7) + "*0\r\n") == expected)
    }

    // MARK: Pub/sub pushes

    @Test func pubSubMessagePush() throws {
        let json = #"{"event":"broadcast_say","data":{"username":"carol","text":"hi"}}"#
        let decoded = try value(messagePush(channel: "r1", payload: json))
        #expect(decoded == .array([bulk("message"), bulk("r1"), bulk(json)]))
        guard case .array(let parts?) = decoded else { Issue.record("not an array"); return }
        #expect(parts.map(\.string) == ["message", "r1", json])
    }

    @Test func pubSubSubscribeAndUnsubscribeConfirmations() throws {
        #expect(try value("*3\r\n$9\r\nsubscribe\r\n$4\r\nroom\r\n:1\r\n") == .array([bulk("subscribe"), bulk("room"), .integer(1)]))
        #expect(try value("*3\r\n$11\r\nunsubscribe\r\n$4\r\nroom\r\n:0\r\n") == .array([bulk("unsubscribe"), bulk("room"), .integer(0)]))
    }

    @Test func pubSubPayloadWithCRLFAndUTF8() throws {
        let json = "{\"event\":\"broadcast_say\",\"data\":{\"username\":\"zoë\",\"text\":\"line1\\r\\nline2 \r\n raw 💬\"}}"
        #expect(try value(messagePush(channel: "chat:é", payload: json)) == .array([bulk("message"), bulk("chat:é"), bulk(json)]))
    }

    // MARK: Consumption

    @Test func incompleteValueConsumesNothing() throws {
        let wire = Array(messagePush(channel: "r1", payload: "hello").utf8)
        for cut in 0..<wire.count {
            var stream = buffer(Array(wire[..<cut]))
            let start = stream.readerIndex
            #expect(try RESPDecoder().next(from: &stream) == nil, "cut at \(cut)")
            #expect(stream.readerIndex == start, "cut at \(cut) consumed bytes")
        }
    }

    @Test func oneValueConsumedPerCallLeavingTheRest() throws {
        var stream = buffer("+OK\r\n:1\r\n$2\r\nhi\r\n+PAR")
        let decoder = RESPDecoder()
        #expect(try decoder.next(from: &stream) == .simpleString("OK"))
        #expect(stream.readableBytes == 16)
        #expect(try decoder.next(from: &stream) == .integer(1))
        #expect(try decoder.next(from: &stream) == bulk("hi"))
        #expect(try decoder.next(from: &stream) == nil)
        #expect(stream.readableBytes == 4)
        stream.writeString("TIAL\r\n")
        #expect(try decoder.next(from: &stream) == .simpleString("PARTIAL"))
        #expect(stream.readableBytes == 0)
    }

    @Test func decodesFromABufferThatWasReadBefore() throws {
        // The decoder works relative to the reader index, not offset 0.
        var stream = buffer("garbage+OK\r\n")
        stream.moveReaderIndex(forwardBy: 7)
        #expect(try RESPDecoder().next(from: &stream) == .simpleString("OK"))
        #expect(stream.readableBytes == 0)
    }

    @Test func largeArrayHeaderWithoutElementsWaits() throws {
        // A header announcing a million elements allocates nothing up front; it just waits.
        var stream = buffer("*1000000\r\n:1\r\n")
        #expect(try RESPDecoder().next(from: &stream) == nil)
        #expect(stream.readableBytes == 14)
    }

    @Test func largeBulkHeaderWithoutBodyWaits() throws {
        var stream = buffer("$67108864\r\nabc")
        #expect(try RESPDecoder().next(from: &stream) == nil)
    }

    @Test func bulkStringAtTheLimitDecodes() throws {
        let decoder = RESPDecoder(maxBulkLength: 8)
        #expect(try value("$8\r\n12345678\r\n", decoder) == bulk("12345678"))
    }

    @Test func arrayAtTheLimitDecodes() throws {
        let decoder = RESPDecoder(maxArrayCount: 3)
        #expect(try value("*3\r\n:1\r\n:2\r\n:3\r\n", decoder) == .array([.integer(1), .integer(2), .integer(3)]))
    }

    @Test func lineAtTheLimitDecodes() throws {
        let decoder = RESPDecoder(maxLineLength: 16)
        let line = String(repeating: "a", count: 16)
        #expect(try value("+\(line)\r\n", decoder) == .simpleString(line))
    }

    @Test func valueAccessors() {
        #expect(RESPValue.simpleString("x").string == "x")
        #expect(bulk("y").string == "y")
        #expect(RESPValue.integer(1).string == nil)
        #expect(RESPValue.array([]).string == nil)
        #expect(RESPValue.simpleString("x").bytes == nil, "only bulk strings have bytes")
        #expect(bulk("z").bytes == buffer("z"))
    }
}
