import NIOCore

/// A connection that can be a member of rooms. All calls happen on the member's event loop,
/// which is the event loop of the shard it belongs to.
public protocol RoomMember: AnyObject {
    /// Queues a broadcast (`42["message",…]`, and the same as a WebSocket frame) without
    /// flushing it to the socket.
    func enqueueBroadcast(_ frames: BroadcastFrames)
    /// Writes out what `enqueueBroadcast` queued; called once per event-loop tick.
    func flushBroadcasts()
    /// Set by the shard while the member waits for its end-of-tick flush.
    var broadcastFlushPending: Bool { get set }
}
