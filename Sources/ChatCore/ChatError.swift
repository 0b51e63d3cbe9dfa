import SocketIO

/// A violation of the chat protocol or its limits, reported only to the client that made it:
/// as the `error` event `{reason, message}` and, when the event carried an ack, as
/// `{ok:false, error:reason}`.
public struct ChatError: Error, Equatable, Sendable {
    public enum Reason: String, Sendable, CaseIterable {
        case invalidRoomID = "invalid_roomid"
        case invalidUsername = "invalid_username"
        case alreadyJoined = "already_joined"
        case notJoined = "not_joined"
        case invalidText = "invalid_text"
        case textTooLong = "text_too_long"
        case rateLimited = "rate_limited"
        case invalidEvent = "invalid_event"
    }

    public var reason: Reason
    public var message: String

    public init(_ reason: Reason, _ message: String) {
        self.reason = reason
        self.message = message
    }

    public var eventPayload: JSONValue {
        .object([("reason", .string(reason.rawValue)), ("message", .string(message))])
    }

    public var ackPayload: JSONValue {
        .object([("ok", .bool(false)), ("error", .string(reason.rawValue)), ("message", .string(message))])
    }
}
