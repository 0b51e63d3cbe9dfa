import Testing
@testable import ChatCore

/// The event JSON must match what the original Node server put on Redis, byte for byte
/// (shared/reference/original-wire.md).
@Suite("ChatMessage")
struct ChatMessageTests {
    @Test func joinIsByteExactWithTheOriginalWire() {
        let message = ChatMessage.join(room: "r1", username: "carol")
        #expect(message.room == "r1")
        #expect(message.eventJSON == #"{"event":"join","data":{"username":"carol"}}"#)
    }

    @Test func sayIsByteExactWithTheOriginalWire() {
        let message = ChatMessage.say(room: "r1", username: "dave", text: "hi")
        #expect(message.room == "r1")
        #expect(message.eventJSON == #"{"event":"broadcast_say","data":{"username":"dave","text":"hi"}}"#)
    }

    @Test func quitIsByteExactWithTheOriginalWire() {
        let message = ChatMessage.quit(room: "r1", username: "dave")
        #expect(message.room == "r1")
        #expect(message.eventJSON == #"{"event":"broadcast_quit","data":{"username":"dave"}}"#)
    }

    @Test func eventJSONBytesAreUTF8OfTheString() {
        let message = ChatMessage.say(room: "r", username: "dave", text: "hi")
        #expect(Array(message.eventJSON.utf8) == Array(#"{"event":"broadcast_say","data":{"username":"dave","text":"hi"}}"#.utf8))
    }

    @Test func quotesAndBackslashesAreEscapedInText() {
        let message = ChatMessage.say(room: "r", username: "dave", text: #"say "hi" \o/"#)
        #expect(message.eventJSON == #"{"event":"broadcast_say","data":{"username":"dave","text":"say \"hi\" \\o/"}}"#)
    }

    @Test func quotesAndBackslashesAreEscapedInUsername() {
        let message = ChatMessage.join(room: "r", username: #"a"b\c"#)
        #expect(message.eventJSON == #"{"event":"join","data":{"username":"a\"b\\c"}}"#)
    }

    @Test func newlinesTabsAndShortEscapesUseJSONStringifyForms() {
        let message = ChatMessage.say(room: "r", username: "u", text: "a\nb\rc\td\u{08}e\u{0C}f")
        #expect(message.eventJSON == #"{"event":"broadcast_say","data":{"username":"u","text":"a\nb\rc\td\be\ff"}}"#)
    }

    @Test func otherControlCharactersAreEscapedAsLowercaseUnicodeEscapes() {
        let message = ChatMessage.say(room: "r", username: "u", text: "\u{0}\u{1}\u{1B}\u{1F}")
        #expect(message.eventJSON == #"{"event":"broadcast_say","data":{"username":"u","text":"\u0000\u0001\u001b\u001f"}}"#)
    }

    @Test func deleteAndC1ControlsAreWrittenRawAsJSONStringifyDoes() {
        let message = ChatMessage.say(room: "r", username: "u", text: "\u{7F}\u{85}")
        #expect(message.eventJSON == "{\"event\":\"broadcast_say\",\"data\":{\"username\":\"u\",\"text\":\"\u{7F}\u{85}\"}}")
    }

    @Test func unicodeIsWrittenRawNotEscaped() {
        let text = "héllo 世界 🎉 \u{2028}\u{2029}"
        let message = ChatMessage.say(room: "r", username: "zoë", text: text)
        #expect(message.eventJSON == #"{"event":"broadcast_say","data":{"username":"zoë","text":""# + text + #""}}"#)
        #expect(!message.eventJSON.contains("\\u"))
    }

    @Test func slashIsNotEscaped() {
        let message = ChatMessage.say(room: "r", username: "u", text: "a/b</script>")
        #expect(message.eventJSON == #"{"event":"broadcast_say","data":{"username":"u","text":"a/b</script>"}}"#)
    }

    @Test func roomIsNotPartOfTheEventJSON() {
        let message = ChatMessage.join(room: "secret-room", username: "carol")
        #expect(!message.eventJSON.contains("secret-room"))
    }

    @Test func kindRawValuesAreTheOriginalEventNames() {
        #expect(ChatMessage.Kind.join.rawValue == "join")
        #expect(ChatMessage.Kind.broadcastSay.rawValue == "broadcast_say")
        #expect(ChatMessage.Kind.broadcastQuit.rawValue == "broadcast_quit")
    }

    @Test func equalMessagesCompareEqual() {
        #expect(ChatMessage.join(room: "r", username: "a") == ChatMessage(room: "r", eventJSON: #"{"event":"join","data":{"username":"a"}}"#))
        #expect(ChatMessage.join(room: "r", username: "a") != ChatMessage.join(room: "s", username: "a"))
    }
}
