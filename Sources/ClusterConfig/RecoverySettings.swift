import NIOCore

/// `[recovery]`: Socket.IO connection-state recovery (docs/RECOVERY.md). Off by default, so the
/// wire stays exactly as before unless an operator asks for it.
public struct RecoverySettings: Sendable, Equatable {
    /// `enabled = on|off`: CONNECT replies carry a `pid`, broadcasts an offset argument.
    public var enabled: Bool = false
    /// `max_disconnection` (ms): how long a session that lost its connection is held for
    /// recovery before its quit is published (socket.io's default, 2 minutes).
    public var maxDisconnection: TimeAmount = .milliseconds(120_000)
    /// `room_messages`: the most messages kept per room for replay.
    public var roomMessages: Int = 1000
    /// `history_bytes`: the most bytes of kept messages, all rooms together, per node.
    public var historyBytes: Int = 64 << 20
    /// `catch_up` (ms): the longest a recovering node waits for messages the client already
    /// had but the node has not received yet (in flight on a live link).
    public var catchUp: TimeAmount = .milliseconds(1000)

    public init() {}
}
