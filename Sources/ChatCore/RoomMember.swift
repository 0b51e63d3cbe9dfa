import NIOCore

/// A connection that can be a member of rooms. All calls happen on the member's event loop,
/// which is the event loop of the shard it belongs to.
public protocol RoomMember: AnyObject {
    /// Takes the broadcasts one room had for this member since the last batch, in order, and
    /// writes and flushes them: one write per member per room per event-loop tick.
    func deliver(_ batch: RoomBatch)
}
