import ChatCore
import NIOConcurrencyHelpers
import NIOCore
import Synchronization

/// Keeps the room of a held session subscribed while the session may still be recovered, for
/// a fanout whose subscriptions follow the node's local members (Redis). Without it, a blip
/// of a room's only local member would unsubscribe the node: what the room says meanwhile
/// would never reach the node, so it could not be replayed, and the recovery would look
/// complete while it is not. (The mesh needs none of this: with recovery on it sends every
/// room to every node. A node without a fanout has nothing to subscribe.)
///
/// A held session is stood in for by a silent member of its room, from just before the
/// session leaves the room until it is recovered here or `max_disconnection` has passed.
final class HeldRoomInterest: Sendable {
    /// Takes the room's broadcasts and drops them: only its membership counts.
    private final class Placeholder: RoomMember {
        func deliver(_ batch: RoomBatch) {}
    }

    private struct Hold: @unchecked Sendable { // placeholder: used only on shard's loop (join, leave)
        let placeholder: Placeholder
        let room: String
        let shard: RoomShard
        let expiry: Scheduled<Void>
    }

    private let hub: RoomHub
    /// `[recovery] max_disconnection`; a reload sets it for sessions held from then on.
    private let holdForNanos: Synchronization.Atomic<Int64>
    var holdFor: TimeAmount {
        get { .nanoseconds(holdForNanos.load(ordering: .relaxed)) }
        set { holdForNanos.store(newValue.nanoseconds, ordering: .relaxed) }
    }
    private let holds = NIOLockedValueBox<[String: Hold]>([:])

    init(hub: RoomHub, holdFor: TimeAmount) {
        self.hub = hub
        self.holdForNanos = Synchronization.Atomic(holdFor.nanoseconds)
    }

    /// Sessions held here right now (for tests).
    var count: Int { holds.withLockedValue { $0.count } }

    /// Called on `shard`'s loop, before session `pid` leaves `room`.
    func hold(pid: String, room: String, shard: RoomShard) {
        shard.eventLoop.preconditionInEventLoop()
        let placeholder = Placeholder()
        hub.join(placeholder, room: room, shard: shard)
        let expiry = shard.eventLoop.scheduleTask(in: holdFor) { [weak self] () -> Void in
            self?.release(pid: pid)
        }
        let hold = Hold(placeholder: placeholder, room: room, shard: shard, expiry: expiry)
        if let replaced = holds.withLockedValue({ $0.updateValue(hold, forKey: pid) }) {
            leave(replaced)
        }
    }

    /// Session `pid` came back here (and is in its room again), or its time is up.
    func release(pid: String) {
        guard let hold = holds.withLockedValue({ $0.removeValue(forKey: pid) }) else { return }
        leave(hold)
    }

    private func leave(_ hold: Hold) {
        hold.expiry.cancel()
        let hub = self.hub
        hold.shard.eventLoop.execute { hub.leave(hold.placeholder, room: hold.room, shard: hold.shard) }
    }
}
