import NIOCore
import SocketIO

/// A chat event published to a room: the JSON the original servers put on Redis,
/// `{"event":"join","data":{"username":…}}` and friends. Built once at its origin.
public struct ChatMessage: Sendable, Equatable {
    public enum Kind: String, Sendable {
        case join, broadcastSay = "broadcast_say", broadcastQuit = "broadcast_quit"
    }

    public let room: String
    public let eventJSON: String

    public init(room: String, eventJSON: String) {
        self.room = room
        self.eventJSON = eventJSON
    }

    public static func join(room: String, username: String) -> ChatMessage {
        make(room: room, kind: .join, data: [("username", .string(username))])
    }

    public static func say(room: String, username: String, text: String) -> ChatMessage {
        make(room: room, kind: .broadcastSay, data: [("username", .string(username)), ("text", .string(text))])
    }

    public static func quit(room: String, username: String) -> ChatMessage {
        make(room: room, kind: .broadcastQuit, data: [("username", .string(username))])
    }

    private static func make(room: String, kind: Kind, data: [(String, JSONValue)]) -> ChatMessage {
        let json = JSONWriter.string(.object([("event", .string(kind.rawValue)), ("data", .object(data))]))
        return ChatMessage(room: room, eventJSON: json)
    }
}

/// The bytes every member of a room receives for one message: the Engine.IO message packet
/// `2["message",<event JSON>]` (Socket.IO EVENT) prefixed with the Engine.IO message type `4`,
/// encoded once and shared by all writes.
public struct ChatBroadcast: Sendable {
    public let room: String
    /// `42["message",{…}]`: Engine.IO type `4` + the Socket.IO EVENT packet `2[…]`.
    public let engineFrame: ByteBuffer
    /// Who published it and its place in that publisher's order in the room, when recovery is
    /// on (set by the fanout that orders it); nil otherwise.
    public var origin: MessageOrigin? = nil

    private static let head = Array(#"42["message","#.utf8)

    public init(room: String, eventJSON: some Collection<UInt8>) {
        var buffer = ByteBufferAllocator().buffer(capacity: Self.head.count + eventJSON.count + 1)
        buffer.writeBytes(Self.head)
        buffer.writeBytes(eventJSON)
        buffer.writeInteger(UInt8(ascii: "]"))
        self.room = room
        self.engineFrame = buffer
    }

    public init(_ message: ChatMessage) {
        self.init(room: message.room, eventJSON: message.eventJSON.utf8)
    }

    /// Rebuilds from a Socket.IO packet (`2[…]`) encoded at another node.
    public init(room: String, socketPacket: ByteBuffer) {
        var buffer = ByteBufferAllocator().buffer(capacity: socketPacket.readableBytes + 1)
        buffer.writeInteger(UInt8(ascii: "4"))
        buffer.writeImmutableBuffer(socketPacket)
        self.room = room
        self.engineFrame = buffer
    }

    /// The same broadcast with its recovery offset as one more, last argument:
    /// `42["message",{…},"<offset>"]`. Offsets are `[0-9a-z.-]`, so need no escaping. A frame
    /// that is not an event array (never built here) is returned unchanged.
    public func withOffset(_ offset: String) -> ChatBroadcast {
        let end = engineFrame.readerIndex + engineFrame.readableBytes - 1
        guard engineFrame.readableBytes > 1, engineFrame.getInteger(at: end, as: UInt8.self) == UInt8(ascii: "]") else {
            return self
        }
        var buffer = ByteBufferAllocator().buffer(capacity: engineFrame.readableBytes + offset.utf8.count + 3)
        buffer.writeImmutableBuffer(engineFrame.getSlice(at: engineFrame.readerIndex, length: engineFrame.readableBytes - 1)!)
        buffer.writeStaticString(",\"")
        buffer.writeString(offset)
        buffer.writeStaticString("\"]")
        var stamped = ChatBroadcast(room: room, engineFrame: buffer)
        stamped.origin = origin
        return stamped
    }

    private init(room: String, engineFrame: ByteBuffer) {
        self.room = room
        self.engineFrame = engineFrame
    }

    /// The Socket.IO packet without the Engine.IO type byte, as sent between nodes.
    public var socketPacket: ByteBuffer {
        engineFrame.getSlice(at: engineFrame.readerIndex + 1, length: engineFrame.readableBytes - 1)!
    }
}
