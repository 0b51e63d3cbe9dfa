import NIOCore
import Testing
@testable import ChatCore

@Suite("RecoveryOffset")
struct RecoveryOffsetTests {
    @Test func formatsSortedByOriginInBase36AndParsesBack() throws {
        let offset = RecoveryOffset([1_000_000: 36, 35: 1, 7: 1_295])
        #expect(offset.string == "7.zz-z.1-lfls.10") // 7 < 35 < 1 000 000
        let parsed = try #require(RecoveryOffset(parsing: offset.string))
        #expect(parsed == offset)
        #expect(parsed[35] == 1)
        #expect(parsed[7] == 1_295)
        #expect(parsed[1_000_000] == 36)
        #expect(parsed[8] == 0)
    }

    @Test func emptyOffsetIsTheEmptyString() throws {
        #expect(RecoveryOffset().string == "")
        #expect(try #require(RecoveryOffset(parsing: "")) == RecoveryOffset())
    }

    @Test func extremesRoundTrip() throws {
        let offset = RecoveryOffset([UInt32.max: UInt64.max, 1: 1])
        #expect(try #require(RecoveryOffset(parsing: offset.string)) == offset)
    }

    @Test(arguments: [
        "x", "1", "1.", ".1", "1.2-", "-1.2", "1.2--3.4", "1..2", "1.2.3", "A.1", "1.B", "1.2 ", " 1.2", "1,2",
        "0.5", "5.0", "1.1-1.2", "1.-1", "1.+1", "1.2\u{0}", "é.1",
        "1z141z4.1",            // origin above 32 bits
        "1.3w5e11264sgsg",      // sequence above 64 bits
        "1.00000000000001",     // 14 digits
    ])
    func rejectsGarbage(text: String) {
        #expect(RecoveryOffset(parsing: text) == nil)
    }

    @Test func rejectsMoreThan32Entries() {
        let entries = (1...33).map { "\(String($0, radix: 36)).1" }
        #expect(RecoveryOffset(parsing: entries.dropLast().joined(separator: "-")) != nil)
        #expect(RecoveryOffset(parsing: entries.joined(separator: "-")) == nil)
    }

    @Test func rejectsMoreThan400Characters() {
        // 25 entries of 15 characters and 24 dashes = 399 characters: accepted, and 400; 401 are not.
        let entries = (1...25).map { String(repeating: "0", count: 5 - String($0).count) + String($0) + ".123456789" }
        let text = entries.joined(separator: "-")
        #expect(text.utf8.count == 399)
        #expect(RecoveryOffset(parsing: text) != nil)
        #expect(RecoveryOffset(parsing: text + "0") != nil)   // 400
        #expect(RecoveryOffset(parsing: text + "00") == nil)  // 401
        #expect(RecoveryOffset(parsing: String(repeating: "1", count: 100_000)) == nil)
    }

    @Test func dropsZeroSequencesWhenBuilt() {
        #expect(RecoveryOffset([3: 0, 4: 2]).string == "4.2")
    }

    @Test func originIDIsNeverZeroAndSeparatesEpochs() {
        var seen: Set<UInt32> = []
        for epoch: UInt64 in [0, 1, 2, 1 << 32, (1 << 32) + 1, UInt64.max, 1_733_000_000_000_000_000] {
            let id = MessageOrigin.originID(epoch: epoch)
            #expect(id != 0)
            seen.insert(id)
        }
        #expect(seen.count == 7)
        #expect(MessageOrigin.originID(epoch: 42) == MessageOrigin.originID(epoch: 42))
    }

    @Test func broadcastWithOffsetAddsALastArgumentAndKeepsRoomAndOrigin() {
        var broadcast = ChatBroadcast(.say(room: "r1", username: "a", text: "hi"))
        broadcast.origin = MessageOrigin(origin: 9, sequence: 4)
        let stamped = broadcast.withOffset("9.4")
        #expect(String(buffer: stamped.engineFrame) == #"42["message",{"event":"broadcast_say","data":{"username":"a","text":"hi"}},"9.4"]"#)
        #expect(stamped.room == "r1")
        #expect(stamped.origin == MessageOrigin(origin: 9, sequence: 4))
        #expect(String(buffer: broadcast.engineFrame) == sayFrame("a", "hi"))
        #expect(ChatBroadcast(.say(room: "r1", username: "a", text: "hi")).origin == nil)
    }

    @Test func broadcastRebuiltFromAPeerTakesAnOffsetToo() {
        var packet = ByteBuffer()
        packet.writeString(#"2["message",{"event":"join","data":{"username":"b"}}]"#)
        let stamped = ChatBroadcast(room: "r1", socketPacket: packet).withOffset("1.1")
        #expect(String(buffer: stamped.engineFrame) == #"42["message",{"event":"join","data":{"username":"b"}},"1.1"]"#)
    }
}
