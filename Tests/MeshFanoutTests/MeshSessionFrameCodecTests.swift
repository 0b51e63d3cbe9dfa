import ChatCore
import NIOCore
import Testing
@testable import MeshFanout

/// SESSION (type 12), one replicated `SessionRecord`, against bytes written by hand, and every
/// bound its decoder enforces.
@Suite struct MeshSessionFrameCodecTests {
    static let record = SessionRecord(pid: "p1", sid: "s1", room: "r", username: "u", owner: "a1", ownerEpoch: 7,
                                      version: 1 << 32 | 2, state: .held(sinceMillis: 16), start: RecoveryOffset([1: 5]))
    /// The body of `record`, field by field.
    static let recordBody = "0C 0002 7031 0002 7331 0001 72 01 0001 75 0002 6131 0000000000000007 0000000100000002"
        + " 01 0000000000000010 0003 312E35"

    @Test func sessionEncodesEveryFieldInOrder() {
        // length 50 = type 1 + pid 4 + sid 4 + room 3 + username 1+3 + owner 4 + two u64 + state 1+8 + start 5
        #expect(wire(.session(Self.record)) == hex("00000032") + hex(Self.recordBody))
    }

    @Test func sessionWithoutUsernameLiveAndEmptyStartIsFlagZeroAndZeroTime() {
        let record = SessionRecord(pid: "p", sid: "s", room: "", owner: "a2", ownerEpoch: .max)
        #expect(wire(.session(record)) == hex("00000029 0C 0001 70 0001 73 0000 00 0002 6132 FFFFFFFFFFFFFFFF 0000000000000000"
                                             + " 00 0000000000000000 0000"))
    }

    @Test func endedStateIsTagTwoWithItsTime() throws {
        var record = Self.record
        record.state = .ended(atMillis: -1)
        let bytes = body(.session(record))
        #expect(Array(bytes[36..<45]) == hex("02 FFFFFFFFFFFFFFFF"))
        #expect(try MeshFrameCodec.decode(body: buffer(bytes)) == .session(record))
    }

    @Test func sessionDecodesFromHandWrittenBytes() throws {
        #expect(try MeshFrameCodec.decode(body: buffer(hex(Self.recordBody))) == .session(Self.record))
    }

    @Test func pidAndSidOfSixtyFourBytesAreAcceptedAndOfSixtyFiveRefused() throws {
        var record = Self.record
        record.pid = String(repeating: "p", count: 64)
        record.sid = String(repeating: "s", count: 64)
        #expect(MeshFrameCodec.canEncode(record))
        #expect(try MeshFrameCodec.decode(body: buffer(body(.session(record)))) == .session(record))

        record.pid = String(repeating: "p", count: 65)
        #expect(!MeshFrameCodec.canEncode(record))
        #expect(decodeError(body(.session(record))) == .invalidField("session frame: pid of 65 bytes (1 to 64)"))
        record.pid = "p"
        record.sid = String(repeating: "s", count: 65)
        #expect(decodeError(body(.session(record))) == .invalidField("session frame: sid of 65 bytes (1 to 64)"))
    }

    @Test func emptyPidOrSidIsRefused() {
        #expect(decodeError(hex("0C 0000 0002 7331")) == .invalidField("session frame: pid of 0 bytes (1 to 64)"))
        #expect(decodeError(hex("0C 0002 7031 0000")) == .invalidField("session frame: sid of 0 bytes (1 to 64)"))
    }

    @Test func usernameFlagOtherThanZeroOrOneIsRefused() {
        #expect(decodeError(hex("0C 0002 7031 0002 7331 0001 72 02 0001 75")) == .invalidField("session frame: username flag 2 (0 or 1)"))
    }

    @Test func unknownStateTagIsRefused() {
        let bytes = hex(Self.recordBody.replacingOccurrences(of: " 01 0000000000000010", with: " 03 0000000000000010"))
        #expect(decodeError(bytes) == .invalidField("session frame: state 3 (0 live, 1 held, 2 ended)"))
    }

    @Test func liveStateWithATimeIsRefused() {
        let bytes = hex(Self.recordBody.replacingOccurrences(of: " 01 0000000000000010", with: " 00 0000000000000010"))
        #expect(decodeError(bytes) == .invalidField("session frame: live state with time 16"))
    }

    @Test(arguments: ["x", "1.0", "0.5", "1.5-", "01.5", "2.1-1.1", "1.5-1.6", "A.5", "1.5 "])
    func startOffsetThatIsNotCanonicalIsRefused(_ start: String) {
        var bytes = hex(Self.recordBody.replacingOccurrences(of: " 0003 312E35", with: ""))
        bytes += [UInt8(start.utf8.count >> 8), UInt8(start.utf8.count & 0xFF)] + Array(start.utf8)
        #expect(decodeError(bytes) == .invalidField("session frame: malformed start offset"))
    }

    @Test func startOffsetLongerThanFourHundredBytesIsRefusedBeforeParsing() {
        var bytes = hex(Self.recordBody.replacingOccurrences(of: " 0003 312E35", with: ""))
        bytes += hex("0191") + [UInt8](repeating: 0x31, count: 401)
        #expect(decodeError(bytes) == .invalidField("session frame: start offset of 401 bytes (at most 400)"))
    }

    @Test func recordWhoseStartHasTooManyOriginsCannotBeEncoded() {
        var record = Self.record
        record.start = RecoveryOffset(Dictionary(uniqueKeysWithValues: (1...33).map { (UInt32($0), UInt64(1)) }))
        #expect(!MeshFrameCodec.canEncode(record))
        record.start = RecoveryOffset(Dictionary(uniqueKeysWithValues: (1...32).map { (UInt32($0), UInt64(1)) }))
        #expect(MeshFrameCodec.canEncode(record))
        // 32 of the longest entries (7 + 1 + 13 characters, and the dashes) exceed 400.
        record.start = RecoveryOffset(Dictionary(uniqueKeysWithValues: (0..<32).map { (UInt32.max - UInt32($0), UInt64.max) }))
        #expect(!MeshFrameCodec.canEncode(record))
    }

    @Test func everyCutOfASessionBodyIsTruncated() {
        let full = hex(Self.recordBody)
        for cut in 1..<full.count {
            #expect(decodeError(Array(full.prefix(cut))) == .truncated(.session), "cut to \(cut) bytes")
        }
    }

    @Test func sessionFrameWithTrailingBytesIsRefused() {
        #expect(decodeError(hex(Self.recordBody) + [0]) == .trailingBytes(.session))
    }

    @Test func sessionTypeByteIsTwelve() {
        #expect(MeshFrame.FrameType.session.rawValue == 12)
    }
}
