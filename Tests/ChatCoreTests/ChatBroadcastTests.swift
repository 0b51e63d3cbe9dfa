import NIOCore
import SocketIO
import Testing
@testable import ChatCore

@Suite("ChatBroadcast")
struct ChatBroadcastTests {
    @Test func engineFrameIsEngineMessageTypeThenSocketIOEvent() {
        let broadcast = ChatBroadcast(.join(room: "r1", username: "carol"))
        #expect(broadcast.room == "r1")
        #expect(String(buffer: broadcast.engineFrame) == #"42["message",{"event":"join","data":{"username":"carol"}}]"#)
    }

    @Test func engineFrameOfSayMatchesTheOriginalWire() {
        let broadcast = ChatBroadcast(.say(room: "r1", username: "dave", text: "hi"))
        #expect(String(buffer: broadcast.engineFrame) == #"42["message",{"event":"broadcast_say","data":{"username":"dave","text":"hi"}}]"#)
    }

    @Test func engineFrameOfQuitMatchesTheOriginalWire() {
        let broadcast = ChatBroadcast(.quit(room: "r1", username: "dave"))
        #expect(String(buffer: broadcast.engineFrame) == #"42["message",{"event":"broadcast_quit","data":{"username":"dave"}}]"#)
    }

    @Test func engineFrameKeepsUnicodeAsUTF8Bytes() {
        let broadcast = ChatBroadcast(.say(room: "r", username: "zoë", text: "🎉"))
        let expected = #"42["message",{"event":"broadcast_say","data":{"username":"zoë","text":"🎉"}}]"#
        #expect(broadcast.engineFrame.getBytes(at: broadcast.engineFrame.readerIndex, length: broadcast.engineFrame.readableBytes) == Array(expected.utf8))
    }

    @Test func initFromEventJSONBytesEqualsInitFromMessage() {
        let message = ChatMessage.say(room: "r", username: "u", text: "t")
        let fromBytes = ChatBroadcast(room: "r", eventJSON: Array(message.eventJSON.utf8))
        #expect(fromBytes.engineFrame == ChatBroadcast(message).engineFrame)
    }

    @Test func socketPacketIsTheFrameWithoutTheEngineTypeByte() {
        let broadcast = ChatBroadcast(.say(room: "r1", username: "dave", text: "hi"))
        #expect(String(buffer: broadcast.socketPacket) == #"2["message",{"event":"broadcast_say","data":{"username":"dave","text":"hi"}}]"#)
    }

    @Test func socketPacketDecodesAsMessageEventWithTheEventObject() throws {
        let broadcast = ChatBroadcast(.say(room: "r1", username: "dave", text: "hi"))
        let packet = try SocketPacketCodec.decode(Substring(String(buffer: broadcast.socketPacket)))
        #expect(packet.type == .event)
        #expect(packet.namespace == "/")
        #expect(packet.ackID == nil)
        let (name, arguments) = try #require(packet.eventNameAndArguments)
        #expect(name == "message")
        #expect(arguments == [.object([
            ("event", .string("broadcast_say")),
            ("data", .object([("username", .string("dave")), ("text", .string("hi"))])),
        ])])
    }

    @Test func initFromSocketPacketRoundTrips() {
        let original = ChatBroadcast(.say(room: "r1", username: "dave", text: "hé \"x\""))
        let rebuilt = ChatBroadcast(room: "r1", socketPacket: original.socketPacket)
        #expect(rebuilt.room == "r1")
        #expect(rebuilt.engineFrame == original.engineFrame)
        #expect(String(buffer: rebuilt.socketPacket) == String(buffer: original.socketPacket))
    }

    @Test func initFromSocketPacketUsesOnlyTheReadableBytes() {
        var buffer = ByteBuffer(string: "junk" + #"2["message",{}]"#)
        buffer.moveReaderIndex(forwardBy: 4)
        let broadcast = ChatBroadcast(room: "r", socketPacket: buffer)
        #expect(String(buffer: broadcast.engineFrame) == #"42["message",{}]"#)
        #expect(String(buffer: broadcast.socketPacket) == #"2["message",{}]"#)
    }

    @Test func socketPacketOfARebuiltBroadcastFromASliceRoundTripsAgain() {
        let original = ChatBroadcast(.join(room: "r", username: "a"))
        let once = ChatBroadcast(room: "r", socketPacket: original.socketPacket)
        let twice = ChatBroadcast(room: "r", socketPacket: once.socketPacket)
        #expect(twice.engineFrame == original.engineFrame)
    }
}
