import NIOCore

/// The bounds a `RecoveryStore` keeps to: `[recovery]` of cluster.conf, plus how long an
/// origin silent in a room stays in its vector.
public struct RecoveryPolicy: Sendable, Equatable {
    /// How long a held session stays recoverable, and the oldest a kept message may be.
    public var maxDisconnection: TimeAmount
    /// Most messages kept per room.
    public var roomMessages: Int
    /// Most bytes of kept messages, all rooms together.
    public var historyBytes: Int
    /// Longest wait for messages a recovering client had but this node has not yet received.
    public var catchUp: TimeAmount
    /// An origin silent in a room this long leaves the room's vector: by then no node holds its
    /// messages and no session that saw them is recoverable (2 × maxDisconnection + the mesh's
    /// buffer_ms, during which a link may still replay old messages).
    public var originSilence: TimeAmount

    public init(maxDisconnection: TimeAmount = .milliseconds(120_000), roomMessages: Int = 1000,
                historyBytes: Int = 64 << 20, catchUp: TimeAmount = .milliseconds(1000),
                originSilence: TimeAmount? = nil) {
        self.maxDisconnection = maxDisconnection
        self.roomMessages = max(1, roomMessages)
        self.historyBytes = max(1, historyBytes)
        self.catchUp = catchUp
        self.originSilence = originSilence ?? .nanoseconds(2 * maxDisconnection.nanoseconds + 5_000_000_000)
    }
}
