import SocketIO
import Testing
@testable import ChatCore

@Suite("ChatSession")
struct ChatSessionTests {
    private static let okAck = #"[{"ok":true}]"#

    // MARK: join

    @Test func joinBroadcastsJoinToTheRoomIncludingTheJoiner() {
        let node = Node()
        let carol = Client(node: node, name: "carol"), dave = Client(node: node, name: "dave")
        dave.join("dave")
        node.runAll()
        let replies = carol.join("carol")
        node.runAll()
        #expect(replies.isEmpty)
        #expect(carol.member.flushedFrames == [joinFrame("carol")])
        #expect(dave.member.flushedFrames == [joinFrame("dave"), joinFrame("carol")])
        #expect(carol.session.isJoined)
        #expect(carol.session.username == "carol")
    }

    @Test func joinDoesNotReachOtherRooms() {
        let node = Node()
        let here = Client(node: node, room: "r1"), there = Client(node: node, room: "r2")
        there.join("there")
        here.join("here")
        node.runAll()
        #expect(there.member.flushedFrames == [joinFrame("there")])
    }

    @Test func joinWithAckRepliesOkTrue() {
        let node = Node()
        let client = Client(node: node)
        let replies = client.join("carol", ack: 7)
        #expect(replies == [.ack(7, [.object([("ok", .bool(true))])])])
        #expect(wire(replies) == ["37" + Self.okAck])
    }

    @Test func joinSubscribesBeforePublishing() {
        let node = Node(echo: false)
        let client = Client(node: node)
        client.join("carol")
        #expect(node.fanout.calls == [
            .subscribe("r1"),
            .publish(room: "r1", json: #"{"event":"join","data":{"username":"carol"}}"#),
        ])
        #expect(node.shard.memberCount(of: "r1") == 1)
    }

    @Test func secondJoinIsAlreadyJoined() {
        let node = Node(echo: false)
        let client = Client(node: node)
        client.join("carol")
        node.fanout.reset()
        let replies = client.join("carol2", ack: 3)
        #expect(replies.count == 2)
        #expect(errorReason(replies[0]) == "already_joined")
        #expect(ackError(replies[1]) == "already_joined")
        #expect(replies[1].ackID == 3)
        #expect(client.session.username == "carol")
        #expect(node.fanout.calls.isEmpty)
        #expect(node.shard.memberCount(of: "r1") == 1)
    }

    @Test func errorEventIsTheErrorPayloadOnTheWire() {
        let node = Node()
        let client = Client(node: node)
        let replies = client.say("hi")
        #expect(replies.count == 1)
        let text = wire(replies)[0]
        #expect(text.hasPrefix(#"2["error",{"reason":"not_joined","message":""#))
        #expect(text.hasSuffix(#""}]"#))
    }

    // MARK: say

    @Test func sayBeforeJoinIsNotJoined() {
        let node = Node(echo: false)
        let client = Client(node: node)
        let replies = client.say("hi")
        #expect(replies.count == 1)
        #expect(errorReason(replies[0]) == "not_joined")
        #expect(node.fanout.calls.isEmpty)
    }

    @Test func sayBeforeJoinWithAckAlsoAcksNotJoined() throws {
        let node = Node(echo: false)
        let client = Client(node: node)
        let replies = client.say("hi", ack: 12)
        #expect(replies.count == 2)
        #expect(errorReason(replies[0]) == "not_joined")
        let ack = replies[1]
        #expect(ack.type == .ack)
        #expect(ack.ackID == 12)
        guard case .array(let args)? = ack.data else { Issue.record("ack without array"); return }
        let payload = try #require(args.first)
        #expect(payload["ok"] == .bool(false))
        #expect(payload["error"] == .string("not_joined"))
        #expect(payload["message"]?.stringValue?.isEmpty == false)
        #expect(wire([ack])[0].hasPrefix(#"312[{"ok":false,"error":"not_joined","message":"#))
    }

    @Test func sayBroadcastsToTheWholeRoomIncludingTheSender() {
        let node = Node()
        let dave = Client(node: node), erin = Client(node: node)
        dave.join("dave")
        erin.join("erin")
        node.runAll()
        let replies = dave.say("hi", ack: 1)
        node.runAll()
        #expect(wire(replies) == ["31" + Self.okAck])
        #expect(dave.member.frames.last == sayFrame("dave", "hi"))
        #expect(erin.member.frames.last == sayFrame("dave", "hi"))
    }

    @Test func sayFrameIsByteExactWithTheOriginalWire() {
        let node = Node()
        let dave = Client(node: node)
        dave.join("dave")
        dave.say("hi")
        node.runAll()
        #expect(dave.member.frames.last == #"42["message",{"event":"broadcast_say","data":{"username":"dave","text":"hi"}}]"#)
    }

    @Test func sayWithoutAckRepliesNothing() {
        let node = Node()
        let dave = Client(node: node)
        dave.join("dave")
        #expect(dave.say("hi").isEmpty)
    }

    @Test func emptyTextIsAllowed() {
        let node = Node(echo: false)
        let dave = Client(node: node)
        dave.join("dave")
        #expect(dave.say("", ack: 1) == [.ack(1, [.object([("ok", .bool(true))])])])
        #expect(node.fanout.published.last == .say(room: "r1", username: "dave", text: ""))
    }

    @Test(arguments: [
        ("missing text", [JSONValue.object([])]),
        ("number text", [JSONValue.object([("text", .number(5))])]),
        ("null text", [JSONValue.object([("text", .null)])]),
        ("object text", [JSONValue.object([("text", .object([]))])]),
        ("array text", [JSONValue.object([("text", .array([.string("hi")]))])]),
        ("bare string argument", [JSONValue.string("hi")]),
        ("no argument", [JSONValue]()),
    ])
    func sayWithoutAStringTextIsInvalidText(label: String, arguments: [JSONValue]) {
        let node = Node(echo: false)
        let dave = Client(node: node)
        dave.join("dave")
        node.fanout.reset()
        let replies = dave.emit("say", arguments, ack: 4)
        #expect(replies.count == 2, "\(label)")
        #expect(errorReason(replies[0]) == "invalid_text", "\(label)")
        #expect(ackError(replies[1]) == "invalid_text", "\(label)")
        #expect(node.fanout.calls.isEmpty, "\(label)")
    }

    @Test func textOf4096ScalarsIsAccepted() {
        let node = Node(echo: false)
        let dave = Client(node: node)
        dave.join("dave")
        let text = repeated("é", 4096)
        #expect(dave.say(text, ack: 1) == [.ack(1, [.object([("ok", .bool(true))])])])
        #expect(node.fanout.published.last == .say(room: "r1", username: "dave", text: text))
    }

    @Test func textOf4097ScalarsIsTextTooLong() {
        let node = Node(echo: false)
        let dave = Client(node: node)
        dave.join("dave")
        node.fanout.reset()
        let replies = dave.say(repeated("a", 4097), ack: 1)
        #expect(errorReason(replies[0]) == "text_too_long")
        #expect(ackError(replies[1]) == "text_too_long")
        #expect(node.fanout.calls.isEmpty)
    }

    @Test func textLengthCountsUnicodeScalarsNotGraphemesOrBytes() {
        let node = Node(echo: false)
        let dave = Client(node: node)
        dave.join("dave")
        // 2048 × (e + combining acute) = 2048 graphemes but 4096 scalars: accepted.
        #expect(dave.say(repeated("e\u{301}", 2048)).isEmpty)
        // 2049 of them = 4098 scalars: too long, though only 2049 characters.
        #expect(errorReason(dave.say(repeated("e\u{301}", 2049))[0]) == "text_too_long")
        // 4096 emoji = 16384 UTF-8 bytes but 4096 scalars: accepted.
        #expect(dave.say(repeated("🎉", 4096)).isEmpty)
    }

    @Test func textLimitFollowsTheConfiguredLimits() {
        let node = Node(echo: false)
        let dave = Client(node: node, limits: ChatLimits(textMax: 3))
        dave.join("dave")
        #expect(dave.say("abc").isEmpty)
        #expect(errorReason(dave.say("abcd")[0]) == "text_too_long")
    }

    // MARK: username

    @Test(arguments: [
        ("missing username", [JSONValue.object([])]),
        ("number username", [JSONValue.object([("username", .number(1))])]),
        ("null username", [JSONValue.object([("username", .null)])]),
        ("bool username", [JSONValue.object([("username", .bool(true))])]),
        ("object username", [JSONValue.object([("username", .object([("x", .string("y"))]))])]),
        ("bare string argument", [JSONValue.string("carol")]),
        ("no argument", [JSONValue]()),
        ("empty", [JSONValue.object([("username", .string(""))])]),
        ("65 scalars", [JSONValue.object([("username", .string(String(repeating: "u", count: 65)))])]),
        ("newline", [JSONValue.object([("username", .string("car\nol"))])]),
        ("NUL", [JSONValue.object([("username", .string("carol\u{0}"))])]),
        ("escape", [JSONValue.object([("username", .string("\u{1B}[31mcarol"))])]),
        ("DEL", [JSONValue.object([("username", .string("carol\u{7F}"))])]),
        ("C1 control", [JSONValue.object([("username", .string("carol\u{85}"))])]),
        ("spaces only", [JSONValue.object([("username", .string("   "))])]),
        ("unicode whitespace only", [JSONValue.object([("username", .string("\u{3000}\u{A0}\u{2003}"))])]),
        ("invisible format characters only", [JSONValue.object([("username", .string("\u{200B}\u{FEFF}\u{202E}"))])]),
        ("tab only", [JSONValue.object([("username", .string("\t"))])]),
    ])
    func badUsernameIsInvalidUsername(label: String, arguments: [JSONValue]) {
        let node = Node(echo: false)
        let client = Client(node: node)
        let replies = client.emit("join", arguments, ack: 9)
        #expect(replies.count == 2, "\(label)")
        #expect(errorReason(replies[0]) == "invalid_username", "\(label)")
        #expect(ackError(replies[1]) == "invalid_username", "\(label)")
        #expect(replies[1].ackID == 9, "\(label)")
        #expect(!client.session.isJoined, "\(label)")
        #expect(node.fanout.calls.isEmpty, "\(label)")
        #expect(node.shard.roomCount == 0, "\(label)")
    }

    @Test(arguments: [
        "c",
        String(repeating: "u", count: 64),
        String(repeating: "🎉", count: 64),
        " carol ",
        "zoë 世界",
        "a\u{A0}b",
    ])
    func goodUsernameJoins(username: String) {
        let node = Node(echo: false)
        let client = Client(node: node)
        #expect(client.join(username, ack: 1) == [.ack(1, [.object([("ok", .bool(true))])])])
        #expect(client.session.username == username)
        #expect(node.fanout.published == [.join(room: "r1", username: username)])
    }

    @Test func aFailedJoinCanBeRetried() {
        let node = Node(echo: false)
        let client = Client(node: node)
        #expect(errorReason(client.join("")[0]) == "invalid_username")
        #expect(client.join("carol").isEmpty)
        #expect(client.session.username == "carol")
    }

    @Test func joinIgnoresExtraFieldsAndArguments() {
        let node = Node(echo: false)
        let client = Client(node: node)
        let replies = client.emit("join", [.object([("avatar", .string("x")), ("username", .string("carol"))]), .string("extra")], ack: 2)
        #expect(replies == [.ack(2, [.object([("ok", .bool(true))])])])
        #expect(node.fanout.published == [.join(room: "r1", username: "carol")])
    }

    // MARK: rate limit

    @Test func burstOf40ThenRateLimited() {
        let node = Node(echo: false)
        let clock = ManualClock()
        let dave = Client(node: node, clock: clock)
        dave.join("dave")
        for n in 0..<40 {
            #expect(dave.say("\(n)").isEmpty, "say \(n)")
        }
        let replies = dave.say("too much", ack: 5)
        #expect(errorReason(replies[0]) == "rate_limited")
        #expect(ackError(replies[1]) == "rate_limited")
        #expect(node.fanout.published.count == 41) // join + 40 says
    }

    @Test func rateLimitRefillsAt20PerSecondWithTheClock() {
        let node = Node(echo: false)
        let clock = ManualClock()
        let dave = Client(node: node, clock: clock)
        dave.join("dave")
        for _ in 0..<40 { dave.say("x") }
        #expect(errorReason(dave.say("x")[0]) == "rate_limited")

        clock.advance(milliseconds: 49) // not yet one token (0.98)
        #expect(errorReason(dave.say("x")[0]) == "rate_limited")
        clock.advance(milliseconds: 1) // 50 ms: one token
        #expect(dave.say("x").isEmpty)
        #expect(errorReason(dave.say("x")[0]) == "rate_limited")

        clock.advance(milliseconds: 500) // 10 tokens
        for n in 0..<10 { #expect(dave.say("x").isEmpty, "say \(n)") }
        #expect(errorReason(dave.say("x")[0]) == "rate_limited")
    }

    @Test func rateLimitRefillIsCappedAtTheBurst() {
        let node = Node(echo: false)
        let clock = ManualClock()
        let dave = Client(node: node, clock: clock)
        dave.join("dave")
        for _ in 0..<40 { dave.say("x") }
        clock.advance(milliseconds: 60_000)
        for n in 0..<40 { #expect(dave.say("x").isEmpty, "say \(n)") }
        #expect(errorReason(dave.say("x")[0]) == "rate_limited")
    }

    @Test func sustainedSayingAt20PerSecondIsNeverLimited() {
        let node = Node(echo: false)
        let clock = ManualClock()
        let dave = Client(node: node, clock: clock)
        dave.join("dave")
        for _ in 0..<40 { dave.say("x") } // empty the bucket
        for n in 0..<200 {
            clock.advance(milliseconds: 50)
            #expect(dave.say("x").isEmpty, "say \(n)")
        }
    }

    @Test func joinDoesNotUseSayTokens() {
        let node = Node(echo: false)
        let dave = Client(node: node)
        dave.join("dave")
        for n in 0..<40 { #expect(dave.say("x").isEmpty, "say \(n)") }
    }

    @Test func saysBeforeJoinDoNotUseTokens() {
        let node = Node(echo: false)
        let dave = Client(node: node)
        for _ in 0..<50 { dave.say("x") }
        dave.join("dave")
        for n in 0..<40 { #expect(dave.say("x").isEmpty, "say \(n)") }
    }

    @Test func rateLimitFollowsTheConfiguredLimits() {
        let node = Node(echo: false)
        let clock = ManualClock()
        let dave = Client(node: node, limits: ChatLimits(sayRate: 1, sayBurst: 2), clock: clock)
        dave.join("dave")
        #expect(dave.say("1").isEmpty)
        #expect(dave.say("2").isEmpty)
        #expect(errorReason(dave.say("3")[0]) == "rate_limited")
        clock.advance(milliseconds: 1000)
        #expect(dave.say("4").isEmpty)
    }

    @Test func rateLimitedSayIsNotPublished() {
        let node = Node(echo: false)
        let dave = Client(node: node)
        dave.join("dave")
        for n in 0..<45 { dave.say("\(n)") }
        #expect(node.fanout.published.map(\.eventJSON).last == ChatMessage.say(room: "r1", username: "dave", text: "39").eventJSON)
    }

    // MARK: other events

    @Test func unknownEventWithAckIsInvalidEventAck() throws {
        let node = Node(echo: false)
        let client = Client(node: node)
        let replies = client.emit("typing", [.bool(true)], ack: 21)
        #expect(replies.count == 1)
        #expect(replies[0].type == .ack)
        #expect(replies[0].ackID == 21)
        #expect(ackError(replies[0]) == "invalid_event")
        #expect(wire(replies)[0].hasPrefix(#"321[{"ok":false,"error":"invalid_event","message":"#))
        #expect(node.fanout.calls.isEmpty)
    }

    @Test func unknownEventWithoutAckRepliesNothing() {
        let node = Node(echo: false)
        let client = Client(node: node)
        #expect(client.emit("typing", [.bool(true)]).isEmpty)
        client.join("carol")
        #expect(client.emit("typing", []).isEmpty)
        #expect(node.fanout.published == [.join(room: "r1", username: "carol")])
    }

    @Test func unknownEventMessageQuotesAtMost64CharactersOfTheName() throws {
        let node = Node(echo: false)
        let client = Client(node: node)
        let name = String(repeating: "n", count: 64) + String(repeating: "X", count: 1000)
        let replies = client.emit(name, [], ack: 1)
        let message = try #require(replies.first.flatMap { packet -> String? in
            guard case .array(let args)? = packet.data else { return nil }
            return args.first?["message"]?.stringValue
        })
        #expect(message.contains(String(repeating: "n", count: 64)))
        #expect(!message.contains("X"))
    }

    @Test func eventNamesAreCaseSensitive() {
        let node = Node(echo: false)
        let client = Client(node: node)
        #expect(ackError(client.emit("JOIN", [.object([("username", .string("c"))])], ack: 1)[0]) == "invalid_event")
        #expect(!client.session.isJoined)
    }

    // MARK: leave

    @Test func leaveAfterJoinBroadcastsQuitAndUnsubscribes() {
        let node = Node()
        let dave = Client(node: node, name: "dave"), erin = Client(node: node, name: "erin")
        dave.join("dave")
        erin.join("erin")
        node.runAll()
        node.fanout.reset()

        dave.session.leave()
        node.runAll()
        #expect(!dave.session.isJoined)
        #expect(dave.session.username == nil)
        #expect(erin.member.frames.last == quitFrame("dave"))
        #expect(!dave.member.frames.contains(quitFrame("dave"))) // already out of the room
        #expect(node.fanout.calls == [.publish(room: "r1", json: #"{"event":"broadcast_quit","data":{"username":"dave"}}"#)])
        #expect(node.shard.memberCount(of: "r1") == 1)

        erin.session.leave()
        #expect(node.fanout.calls.suffix(2) == [
            .unsubscribe("r1"),
            .publish(room: "r1", json: #"{"event":"broadcast_quit","data":{"username":"erin"}}"#),
        ])
        #expect(node.shard.roomCount == 0)
        #expect(node.hub.roomCount == 0)
    }

    @Test func lastLeaveUnsubscribesThenPublishesQuit() {
        let node = Node(echo: false)
        let dave = Client(node: node)
        dave.join("dave")
        node.fanout.reset()
        dave.session.leave()
        #expect(node.fanout.calls == [
            .unsubscribe("r1"),
            .publish(room: "r1", json: #"{"event":"broadcast_quit","data":{"username":"dave"}}"#),
        ])
    }

    @Test func leaveWithoutJoinDoesNothing() {
        let node = Node(echo: false)
        let client = Client(node: node)
        client.session.leave()
        #expect(node.fanout.calls.isEmpty)
        #expect(node.hub.roomCount == 0)
    }

    @Test func leaveAfterAFailedJoinDoesNothing() {
        let node = Node(echo: false)
        let client = Client(node: node)
        client.join("")
        client.session.leave()
        #expect(node.fanout.calls.isEmpty)
    }

    @Test func leaveTwiceBroadcastsOneQuit() {
        let node = Node(echo: false)
        let dave = Client(node: node)
        dave.join("dave")
        dave.session.leave()
        dave.session.leave()
        #expect(node.fanout.published.filter { $0 == .quit(room: "r1", username: "dave") }.count == 1)
        #expect(node.fanout.subscriptionCalls == [.subscribe("r1"), .unsubscribe("r1")])
    }

    @Test func sayAfterLeaveIsNotJoined() {
        let node = Node(echo: false)
        let dave = Client(node: node)
        dave.join("dave")
        dave.session.leave()
        #expect(errorReason(dave.say("hi")[0]) == "not_joined")
    }

    // MARK: order

    @Test func messagesFromTheSessionArePublishedInOrder() {
        let node = Node(echo: false)
        let dave = Client(node: node)
        dave.join("dave")
        for n in 0..<10 { dave.say("m\(n)") }
        dave.session.leave()
        let expected: [ChatMessage] = [.join(room: "r1", username: "dave")]
            + (0..<10).map { .say(room: "r1", username: "dave", text: "m\($0)") }
            + [.quit(room: "r1", username: "dave")]
        #expect(node.fanout.published == expected)
    }

    @Test func membersReceiveTheSessionsMessagesInOrder() {
        let node = Node(loops: 2)
        let dave = Client(node: node, shard: 0), erin = Client(node: node, shard: 1)
        erin.join("erin")
        dave.join("dave")
        for n in 0..<5 { dave.say("m\(n)") }
        dave.session.leave()
        node.runAll()
        let expected = [joinFrame("erin"), joinFrame("dave")] + (0..<5).map { sayFrame("dave", "m\($0)") } + [quitFrame("dave")]
        #expect(erin.member.flushedFrames == expected)
    }

    @Test func sessionsInTheSameRoomOnTwoShardsShareOneSubscription() {
        let node = Node(loops: 2, echo: false)
        let a = Client(node: node, shard: 0), b = Client(node: node, shard: 1)
        a.join("a")
        b.join("b")
        a.session.leave()
        #expect(node.fanout.subscriptionCalls == [.subscribe("r1")])
        b.session.leave()
        #expect(node.fanout.subscriptionCalls == [.subscribe("r1"), .unsubscribe("r1")])
    }

    @Test func roomIDIsTheOneGivenAtConnect() {
        let node = Node(echo: false)
        let client = Client(node: node, room: "lobby 🎉")
        #expect(client.session.roomID == "lobby 🎉")
        client.join("carol")
        #expect(node.fanout.published == [.join(room: "lobby 🎉", username: "carol")])
    }
}
