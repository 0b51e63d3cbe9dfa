import Testing
@testable import ChatBench

@Suite struct SayTextTests {
    @Test func roundTrip() {
        let stamp = SayStamp(measured: true, sender: 12, sequence: 123, sentNanos: 123_456_789_012)
        let text = SayText.encode(stamp, payload: 64)
        #expect(text.utf8.count == 64)
        #expect(text.hasPrefix("s12:000123:123456789012:xxx"))
        #expect(SayText.parse(text) == stamp)
    }

    @Test func warmupStampsAreMarked() {
        let stamp = SayStamp(measured: false, sender: 0, sequence: 0, sentNanos: 1)
        let text = SayText.encode(stamp, payload: 8)
        #expect(text == "w0:000000:1:")  // longer than the payload when the stamp is
        #expect(SayText.parse(text) == stamp)
    }

    @Test func extremesRoundTrip() {
        for stamp in [
            SayStamp(measured: true, sender: 0, sequence: 0, sentNanos: 0),
            SayStamp(measured: true, sender: 99_999, sequence: 9_999_999_999, sentNanos: UInt64.max / 2),
        ] {
            #expect(SayText.parse(SayText.encode(stamp, payload: 200)) == stamp)
        }
    }

    @Test func garbageIsNotAStamp() {
        for text in ["", "hello", "s:1:2:", "s1:2", "s1:2:3", "x1:2:3:", "s1:a:3:", "s1:2:99999999999999999999999:"] {
            #expect(SayText.parse(text) == nil, "\(text)")
        }
    }

    @Test func scannerFindsTheStampInABroadcast() {
        let stamp = SayStamp(measured: true, sender: 3, sequence: 42, sentNanos: 987_654_321)
        let text = SayText.encode(stamp, payload: 64)
        let frame = #"42["message",{"event":"broadcast_say","data":{"username":"b3","text":"\#(text)"}}]"#
        #expect(PacketScanner.scan(frame) == .say(stamp))
        let foreign = #"42["message",{"event":"broadcast_say","data":{"username":"x","text":"hi"}}]"#
        #expect(PacketScanner.scan(foreign) == .say(nil))
    }

    @Test func scannerClassifiesTheRest() {
        #expect(PacketScanner.scan("2") == .ping)
        #expect(PacketScanner.scan(#"0{"sid":"abc","upgrades":[]}"#) == .open)
        #expect(PacketScanner.scan(#"40{"sid":"x"}"#) == .connected)
        #expect(PacketScanner.scan(#"44{"message":"no"}"#) == .connectError)
        #expect(PacketScanner.scan(#"42["error",{"reason":"rate_limited"}]"#) == .error)
        #expect(PacketScanner.scan(#"42["message",{"event":"broadcast_quit","data":{"username":"b1"}}]"#) == .otherMessage)
        let join = #"42["message",{"event":"join","data":{"username":"b17"}}]"#
        guard case .join(let range) = PacketScanner.scan(join) else {
            Issue.record("not a join")
            return
        }
        #expect(String(decoding: Array(join.utf8)[range], as: UTF8.self) == "b17")
    }
}
