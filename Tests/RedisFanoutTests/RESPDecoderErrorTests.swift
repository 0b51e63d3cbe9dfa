import NIOCore
import Testing
@testable import RedisFanout

/// Malformed replies: each is refused with its own `RESPError` (RedisLink then resets the
/// connection), never a crash, never a guess.
@Suite struct RESPDecoderErrorTests {
    // MARK: Type byte

    @Test func unknownTypeByte() {
        #expect(decodeError("!oops\r\n") == .unknownType(UInt8(ascii: "!")))
        #expect(decodeError("hello\r\n") == .unknownType(UInt8(ascii: "h")))
        #expect(decodeError([0x00, 0x0D, 0x0A]) == .unknownType(0))
        #expect(decodeError([0xFF, 0x0D, 0x0A]) == .unknownType(0xFF))
    }

    @Test func resp3TypesAreUnknownInRESP2() {
        // RESP3 null, double, boolean, map, set, push, verbatim string, big number.
        for type in ["_", ",", "#", "%", "~", ">", "=", "("] {
            #expect(decodeError("\(type)1\r\n") == .unknownType(Array(type.utf8)[0]), "type \(type)")
        }
    }

    @Test func unknownTypeInsideAnArray() {
        #expect(decodeError("*2\r\n:1\r\n?x\r\n") == .unknownType(UInt8(ascii: "?")))
    }

    @Test func unknownTypeAfterValidValuesFailsAtThatValue() throws {
        var stream = buffer("+OK\r\n@bad\r\n")
        let decoder = RESPDecoder()
        #expect(try decoder.next(from: &stream) == .simpleString("OK"))
        #expect(throws: RESPError.unknownType(UInt8(ascii: "@"))) { try decoder.next(from: &stream) }
    }

    // MARK: Integers and lengths

    @Test func badInteger() {
        for bad in [":\r\n", ":-\r\n", ":12a\r\n", ": 1\r\n", ":1 \r\n", ":+1\r\n", ":1.5\r\n", ":0x10\r\n", ":--1\r\n", ":1-\r\n"] {
            #expect(decodeError(bad) == .invalidInteger, "\(bad.debugDescription)")
        }
    }

    @Test func badBulkLength() {
        for bad in ["$\r\n", "$abc\r\n", "$-\r\n", "$1a\r\n", "$ 3\r\n", "$99999999999999999999\r\n"] {
            #expect(decodeError(bad) == .invalidLength, "\(bad.debugDescription)")
        }
    }

    @Test func badArrayCount() {
        for bad in ["*\r\n", "*x\r\n", "*1.0\r\n", "*99999999999999999999\r\n"] {
            #expect(decodeError(bad) == .invalidLength, "\(bad.debugDescription)")
        }
    }

    @Test func negativeLengthOtherThanMinusOne() {
        for bad in ["$-2\r\n", "$-100\r\n", "*-2\r\n", "*-9223372036854775807\r\n", "$-9223372036854775807\r\n"] {
            #expect(decodeError(bad) == .invalidLength, "\(bad.debugDescription)")
        }
    }

    // MARK: Line endings

    @Test func missingCRLFAfterBulkBody() {
        #expect(decodeError("$3\r\nabcXY") == .missingCRLF)
        #expect(decodeError("$3\r\nabc\rX") == .missingCRLF)
        #expect(decodeError("$3\r\nabc\n\r") == .missingCRLF)
        #expect(decodeError("$0\r\nXX") == .missingCRLF)
        // The length says 3 but the body is longer: the byte after it is not CR.
        #expect(decodeError("$3\r\nabcd\r\n") == .missingCRLF)
    }

    @Test func missingCRLFAfterBulkBodyInsideAPush() {
        #expect(decodeError("*3\r\n$7\r\nmessage\r\n$2\r\nr1\r\n$2\r\nhiXX") == .missingCRLF)
    }

    @Test func crWithoutLF() {
        #expect(decodeError("+OK\rX\r\n") == .missingCRLF)
        #expect(decodeError("-ERR\r\r\n") == .missingCRLF)
        #expect(decodeError(":1\r2\r\n") == .missingCRLF)
        #expect(decodeError("$3\rX\r\nabc\r\n") == .missingCRLF)
        #expect(decodeError("*1\r\r\n") == .missingCRLF)
    }

    @Test func crAtTheEndOfTheBufferWaitsForLF() throws {
        var stream = buffer("+OK\r")
        #expect(try RESPDecoder().next(from: &stream) == nil)
        stream.writeString("\n")
        #expect(try RESPDecoder().next(from: &stream) == .simpleString("OK"))
    }

    @Test func bareLFIsNotALineEnd() throws {
        // `+OK\n` has no CR yet: the decoder keeps waiting (the LF belongs to the line).
        var stream = buffer("+OK\n")
        #expect(try RESPDecoder().next(from: &stream) == nil)
        stream.writeString("\r\n")
        #expect(try RESPDecoder().next(from: &stream) == .simpleString("OK\n"))
    }

    // MARK: Limits

    @Test func lineTooLongWithoutCR() {
        let decoder = RESPDecoder(maxLineLength: 16)
        #expect(decodeError("+" + String(repeating: "a", count: 40), decoder) == .lineTooLong(limit: 16))
        #expect(decodeError(":" + String(repeating: "1", count: 40), decoder) == .lineTooLong(limit: 16))
        #expect(decodeError("$" + String(repeating: "1", count: 40), decoder) == .lineTooLong(limit: 16))
    }

    @Test func lineTooLongIsDetectedBeforeTheCRArrives() {
        // A peer that never sends CR cannot make the decoder buffer without bound.
        let decoder = RESPDecoder(maxLineLength: 1024)
        #expect(decodeError("-" + String(repeating: "E", count: 2000), decoder) == .lineTooLong(limit: 1024))
        #expect(decodeError("+" + String(repeating: "x", count: 70_000)) == .lineTooLong(limit: 64 * 1024))
    }

    @Test func lineTooLongWithCR() {
        let decoder = RESPDecoder(maxLineLength: 16)
        #expect(decodeError("+" + String(repeating: "a", count: 40) + "\r\n", decoder) == .lineTooLong(limit: 16))
    }

    /// A line of limit + 1 bytes (CR found at the last byte of the scanned window) is refused.
    @Test func lineOneByteOverTheLimit() {
        let decoder = RESPDecoder(maxLineLength: 16)
        #expect(decodeError("+" + String(repeating: "a", count: 17) + "\r\n", decoder) == .lineTooLong(limit: 16))
        #expect(decodeError("+" + String(repeating: "a", count: 18) + "\r\n", decoder) == .lineTooLong(limit: 16))
    }

    @Test func bulkTooLarge() {
        #expect(decodeError("$9\r\n", RESPDecoder(maxBulkLength: 8)) == .bulkTooLarge(length: 9, limit: 8))
        // Default limit: 64 MiB. Refused from the header alone, before any body arrives.
        #expect(decodeError("$67108865\r\n") == .bulkTooLarge(length: 67_108_865, limit: 67_108_864))
        #expect(decodeError("$9223372036854775807\r\n") == .bulkTooLarge(length: Int(Int64.max), limit: 67_108_864))
    }

    @Test func bulkTooLargeInsideAPush() {
        #expect(decodeError("*3\r\n$7\r\nmessage\r\n$2\r\nr1\r\n$100\r\n", RESPDecoder(maxBulkLength: 99)) ==
            .bulkTooLarge(length: 100, limit: 99))
    }

    @Test func arrayTooLarge() {
        #expect(decodeError("*5\r\n", RESPDecoder(maxArrayCount: 4)) == .arrayTooLarge(count: 5, limit: 4))
        #expect(decodeError("*1000001\r\n") == .arrayTooLarge(count: 1_000_001, limit: 1_000_000))
        #expect(decodeError("*9223372036854775807\r\n") == .arrayTooLarge(count: Int(Int64.max), limit: 1_000_000))
        #expect(decodeError("*1\r\n*5\r\n", RESPDecoder(maxArrayCount: 4)) == .arrayTooLarge(count: 5, limit: 4))
    }

    @Test func nestingTooDeep() {
        // Nine arrays (depths 0...8) with the default limit of 8.
        #expect(decodeError(String(repeating: "*1\r\n", count: 8) + "*0\r\n") == .nestingTooDeep(limit: 8))
        #expect(decodeError(String(repeating: "*1\r\n", count: 100_000)) == .nestingTooDeep(limit: 8))
        #expect(decodeError("*1\r\n*1\r\n*0\r\n", RESPDecoder(maxDepth: 2)) == .nestingTooDeep(limit: 2))
    }

    @Test func nestingTooDeepIsRefusedBeforeTheInnerValuesArrive() {
        // Refused as soon as the too-deep header is seen, not after waiting for its elements.
        #expect(decodeError(String(repeating: "*2\r\n", count: 9)) == .nestingTooDeep(limit: 8))
    }

    @Test func errorsLeaveTheBufferUnconsumed() {
        var stream = buffer("$3\r\nabcXY")
        let before = stream.readerIndex
        #expect(throws: RESPError.missingCRLF) { try RESPDecoder().next(from: &stream) }
        #expect(stream.readerIndex == before)
    }

    @Test func everyErrorHasAClearDescription() {
        let errors: [RESPError] = [
            .unknownType(33), .invalidInteger, .invalidLength, .lineTooLong(limit: 16),
            .bulkTooLarge(length: 9, limit: 8), .arrayTooLarge(count: 5, limit: 4), .nestingTooDeep(limit: 8), .missingCRLF,
        ]
        let descriptions = errors.map(\.description)
        #expect(Set(descriptions).count == errors.count)
        #expect(descriptions[0].contains("33"))
        #expect(descriptions[4].contains("9") && descriptions[4].contains("8"))
        for text in descriptions { #expect(text.contains("RESP"), "\(text)") }
    }
}
