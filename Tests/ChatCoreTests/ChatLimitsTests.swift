import SocketIO
import Testing
@testable import ChatCore

@Suite("ChatLimits")
struct ChatLimitsTests {
    private let limits = ChatLimits()

    @Test func defaultsMatchTheDocumentedLimits() {
        #expect(limits == ChatLimits(usernameMax: 64, textMax: 4096, roomIDMax: 128, sayRate: 20, sayBurst: 40))
    }

    @Test(arguments: [
        ("nil", nil as String?),
        ("empty", ""),
        ("129 characters", String(repeating: "r", count: 129)),
        ("129 unicode scalars", String(repeating: "é", count: 129)),
        ("NUL", "room\u{0}"),
        ("newline", "ro\nom"),
        ("carriage return", "room\r"),
        ("tab", "\troom"),
        ("escape", "\u{1B}room"),
        ("DEL", "room\u{7F}"),
        ("C1 control", "room\u{9F}"),
        ("only a control character", "\u{1}"),
    ])
    func badRoomIDIsInvalidRoomID(label: String, roomID: String?) {
        let error = limits.validateRoomID(roomID)
        #expect(error?.reason == .invalidRoomID, "\(label)")
        #expect(error?.message.isEmpty == false, "\(label)")
    }

    @Test(arguments: [
        "r",
        "r1",
        String(repeating: "r", count: 128),
        String(repeating: "🎉", count: 128),
        String(repeating: " ", count: 128),
        "my room with spaces",
        "zoë 世界 🎉",
        "a/b?c=d&e#f",
        "\u{A0}",
    ])
    func printableRoomIDUpTo128IsAccepted(roomID: String) {
        #expect(limits.validateRoomID(roomID) == nil)
    }

    @Test func roomIDLimitIsConfigurable() {
        let short = ChatLimits(roomIDMax: 3)
        #expect(short.validateRoomID("abc") == nil)
        #expect(short.validateRoomID("abcd")?.reason == .invalidRoomID)
    }

    @Test func roomIDLengthCountsUnicodeScalars() {
        // 64 × (e + combining acute) = 64 characters, 128 scalars: accepted; one more is not.
        #expect(limits.validateRoomID(String(repeating: "e\u{301}", count: 64)) == nil)
        #expect(limits.validateRoomID(String(repeating: "e\u{301}", count: 64) + "x")?.reason == .invalidRoomID)
    }

    @Test func usernameBoundaries() {
        #expect(limits.validateUsername(String(repeating: "u", count: 64)) == nil)
        #expect(limits.validateUsername(String(repeating: "u", count: 65))?.reason == .invalidUsername)
        #expect(limits.validateUsername("")?.reason == .invalidUsername)
        #expect(limits.validateUsername(nil)?.reason == .invalidUsername)
        #expect(limits.validateUsername(" x ") == nil)
        #expect(limits.validateUsername(" \u{2028} ")?.reason == .invalidUsername)
    }

    @Test func textBoundaries() {
        #expect(limits.validateText(nil)?.reason == .invalidText)
        #expect(limits.validateText("") == nil)
        #expect(limits.validateText(String(repeating: "t", count: 4096)) == nil)
        #expect(limits.validateText(String(repeating: "t", count: 4097))?.reason == .textTooLong)
    }

    @Test func textMayContainNewlinesAndControlCharacters() {
        #expect(limits.validateText("line 1\nline 2\ttab\u{0}") == nil)
    }
}

@Suite("ChatError")
struct ChatErrorTests {
    @Test func reasonRawValuesAreTheDocumentedReasons() {
        #expect(ChatError.Reason.allCases.map(\.rawValue) == [
            "invalid_roomid", "invalid_username", "already_joined", "not_joined",
            "invalid_text", "text_too_long", "rate_limited", "invalid_event",
        ])
    }

    @Test func eventPayloadIsReasonThenMessage() {
        let error = ChatError(.notJoined, "emit join first")
        #expect(JSONWriterString(error.eventPayload) == #"{"reason":"not_joined","message":"emit join first"}"#)
    }

    @Test func ackPayloadIsOkFalseWithErrorReason() {
        let error = ChatError(.rateLimited, "slow down")
        #expect(JSONWriterString(error.ackPayload) == #"{"ok":false,"error":"rate_limited","message":"slow down"}"#)
    }
}

private func JSONWriterString(_ value: JSONValue) -> String {
    JSONWriter.string(value)
}
