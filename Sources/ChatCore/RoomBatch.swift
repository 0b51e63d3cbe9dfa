import NIOCore

/// The broadcasts one room had within one event-loop tick, as the transports write them. Built
/// once per room per tick and shared by every member, so a member's cost per tick is one write
/// whether the room sent it one message or fifty.
public struct RoomBatch: Sendable {
    /// The Engine.IO packets, in order (long-polling queues them one by one).
    public let engineFrames: [ByteBuffer]
    /// The same packets, each in its transport frame, joined into one buffer (WebSocket).
    public let transportBytes: ByteBuffer

    public init(engineFrames: [ByteBuffer], transportBytes: ByteBuffer) {
        self.engineFrames = engineFrames
        self.transportBytes = transportBytes
    }
}
