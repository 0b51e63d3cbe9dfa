/// One recoverable Socket.IO session as every node knows it: replicated in mesh mode, merged
/// by `version` (see `SessionDirectory`).
public struct SessionRecord: Sendable, Equatable {
    public enum State: Sendable, Equatable {
        /// Connected on its owner node.
        case live
        /// Lost its connection at `sinceMillis` (wall clock, ms since 1970); recoverable until
        /// `max_disconnection` has passed.
        case held(sinceMillis: Int64)
        /// Ended (explicit disconnect, or expired) at `atMillis`; kept as a tombstone.
        case ended(atMillis: Int64)
    }

    /// The private session id: the session's secret.
    public var pid: String
    /// The Socket.IO session id the client keeps across a recovery.
    public var sid: String
    public var room: String
    /// nil until the session joins; a session that never joined recovers with no replay.
    public var username: String?
    /// The node the session lives (or last lived) on, and that process's epoch.
    public var owner: String
    public var ownerEpoch: UInt64
    /// `(claims << 32) | changes`: a claim (recovery on a node) outranks any change.
    public var version: UInt64
    public var state: State
    /// The room's vector when the session was made: nothing at or below it is ever replayed.
    public var start: RecoveryOffset

    public init(pid: String, sid: String, room: String, username: String? = nil, owner: String, ownerEpoch: UInt64,
                version: UInt64 = 0, state: State = .live, start: RecoveryOffset = RecoveryOffset()) {
        self.pid = pid
        self.sid = sid
        self.room = room
        self.username = username
        self.owner = owner
        self.ownerEpoch = ownerEpoch
        self.version = version
        self.state = state
        self.start = start
    }

    public var claims: UInt64 { version >> 32 }
    public var changes: UInt64 { version & 0xFFFF_FFFF }

    public var isEnded: Bool {
        if case .ended = state { return true }
        return false
    }

    public var isHeld: Bool {
        if case .held = state { return true }
        return false
    }

    /// One more change by the current owner.
    mutating func noteChange() {
        version = (claims << 32) | ((changes &+ 1) & 0xFFFF_FFFF)
    }

    /// Taken by `node`: one more claim, changes start again.
    mutating func claim(by node: String, epoch: UInt64) {
        version = (claims &+ 1) << 32
        owner = node
        ownerEpoch = epoch
        state = .live
    }
}
