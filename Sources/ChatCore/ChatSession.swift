import NIOCore
import SocketIO

/// The original chat protocol for one client connection: `join {username}` enters the room
/// given at connect, `say {text}` broadcasts to it, disconnecting after a join broadcasts a
/// quit. Runs on the connection's event loop; answers go back as Socket.IO packets for this
/// client alone.
public final class ChatSession {
    public let roomID: String
    public private(set) var username: String?
    /// The node's limits, which a reload may replace (`[limits]`).
    private let liveLimits: LiveSetting<ChatLimits>
    /// This session's copy of them: checked against the live generation on each join and say
    /// (one atomic load; the lock only once after a reload), so the say path stays lock-free.
    private var limitsCopy: LiveSetting<ChatLimits>.Snapshot
    private var limits: ChatLimits { limitsCopy.value }
    private let hub: RoomHub
    private let shard: RoomShard
    private unowned let member: RoomMember
    private var sayBucket: TokenBucket
    private let now: () -> UInt64

    /// `restoredUsername`: a recovered session that had joined as that name is joined again,
    /// without a join message (the room saw nothing). With `restoredAt` (the recovery's history
    /// snapshot) it is made a member of its room here, as of that time, so nothing stamped after
    /// the snapshot passes it by; without, the caller does that (`RoomHub.join(joinedAt:)`).
    /// `onJoined` hears the username of a successful `join`, after the member is in the room and
    /// before the join is published (the engine tells the recovery store).
    public init(roomID: String, limits: LiveSetting<ChatLimits>, hub: RoomHub, shard: RoomShard, member: RoomMember, now: @escaping () -> UInt64,
                restoredUsername: String? = nil, restoredAt: NIODeadline? = nil, onJoined: ((String) -> Void)? = nil) {
        self.roomID = roomID
        self.liveLimits = limits
        let limitsCopy = limits.snapshot
        self.limitsCopy = limitsCopy
        let limits = limitsCopy.value
        self.hub = hub
        self.shard = shard
        self.member = member
        self.now = now
        self.onJoined = onJoined
        self.sayBucket = TokenBucket(rate: limits.sayRate, burst: limits.sayBurst, now: now())
        if let restoredUsername {
            username = restoredUsername
            if let restoredAt { hub.join(member, room: roomID, shard: shard, joinedAt: restoredAt) }
        }
    }

    /// A session with fixed limits (tests, tools): nothing replaces them.
    public convenience init(roomID: String, limits: ChatLimits, hub: RoomHub, shard: RoomShard, member: RoomMember, now: @escaping () -> UInt64,
                            restoredUsername: String? = nil, restoredAt: NIODeadline? = nil, onJoined: ((String) -> Void)? = nil) {
        self.init(roomID: roomID, limits: LiveSetting(limits), hub: hub, shard: shard, member: member, now: now,
                  restoredUsername: restoredUsername, restoredAt: restoredAt, onJoined: onJoined)
    }

    private let onJoined: ((String) -> Void)?

    /// Takes the limits a reload set since this session last looked; a new rate or burst
    /// retunes the say bucket (see `TokenBucket.retune`).
    private func followReloadedLimits() {
        guard liveLimits.refresh(&limitsCopy) else { return }
        if limits.sayRate != sayBucket.rate || limits.sayBurst != sayBucket.burst {
            sayBucket.retune(rate: limits.sayRate, burst: limits.sayBurst, now: now())
        }
    }

    public var isJoined: Bool { username != nil }

    /// Handles one event; returns the packets to send back to this client (acks, errors).
    public func handleEvent(name: String, arguments: [JSONValue], ackID: Int?) -> [SocketPacket] {
        let result: Result<Void, ChatError>
        followReloadedLimits()
        switch name {
        case "join":
            hub.metrics.joins.increment()
            result = join(arguments.first)
        case "say":
            hub.metrics.says.increment()
            result = say(arguments.first)
        default:
            hub.metrics.otherEvents.increment()
            // Unknown events are ignored (new client features stay harmless), but an ack is owed.
            guard let ackID else { return [] }
            let error = ChatError(.invalidEvent, "unknown event '\(name.prefix(64))'")
            hub.metrics.countError(error.reason.rawValue)
            return [.ack(ackID, [error.ackPayload])]
        }
        switch result {
        case .success:
            return ackID.map { [.ack($0, [.object([("ok", .bool(true))])])] } ?? []
        case .failure(let error):
            hub.metrics.countError(error.reason.rawValue)
            var replies: [SocketPacket] = [.event("error", [error.eventPayload])]
            if let ackID { replies.append(.ack(ackID, [error.ackPayload])) }
            return replies
        }
    }

    private func join(_ argument: JSONValue?) -> Result<Void, ChatError> {
        guard username == nil else { return .failure(ChatError(.alreadyJoined, "already joined as '\(username!)'")) }
        let name = argument?["username"]?.stringValue
        if let error = limits.validateUsername(name) { return .failure(error) }
        username = name
        hub.join(member, room: roomID, shard: shard)
        // Before the publish: what the callback sends to the fanout's loop (the recovery
        // record's username) gets there ahead of the join message.
        onJoined?(name!)
        hub.publish(.join(room: roomID, username: name!))
        return .success(())
    }

    private func say(_ argument: JSONValue?) -> Result<Void, ChatError> {
        guard let username else { return .failure(ChatError(.notJoined, "emit join {username} before say")) }
        guard sayBucket.take(now: now()) else {
            return .failure(ChatError(.rateLimited, "more than \(limits.sayRate) says per second (burst \(limits.sayBurst))"))
        }
        let text = argument?["text"]?.stringValue
        if let error = limits.validateText(text) { return .failure(error) }
        hub.publish(.say(room: roomID, username: username, text: text!))
        return .success(())
    }

    /// The connection was lost but the session is held for recovery: leaves the room without
    /// a quit (the quit comes at expiry, or never if the session is recovered). Returns the
    /// username it had, nil if it had not joined.
    @discardableResult
    public func detach() -> String? {
        guard let username else { return nil }
        self.username = nil
        hub.leave(member, room: roomID, shard: shard)
        return username
    }

    /// The client left (namespace disconnect or transport close).
    public func leave() {
        guard let username else { return }
        self.username = nil
        hub.leave(member, room: roomID, shard: shard)
        hub.publish(.quit(room: roomID, username: username))
    }
}
