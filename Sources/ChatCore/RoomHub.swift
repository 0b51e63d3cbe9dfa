import NIOConcurrencyHelpers
import NIOCore

/// A node's rooms: one `RoomShard` per event loop, the node-wide member count per room that
/// decides when to subscribe or unsubscribe at the fanout, and the entry point for messages
/// that the fanout delivers.
public final class RoomHub: FanoutDelivery {
    public let shards: [RoomShard]
    public let fanout: any Fanout
    public let metrics: ChatMetrics
    /// Connection-state recovery, when it is on: every broadcast is stamped through it.
    public let recovery: RecoveryStore?
    private let shardByLoop: [ObjectIdentifier: RoomShard]
    // Touched only on join and leave, never per message.
    private let memberCounts = NIOLockedValueBox<[String: Int]>([:])

    public init(eventLoops: [any EventLoop], fanout: any Fanout, metrics: ChatMetrics,
                maxWriteDelay: TimeAmount = .milliseconds(10),
                transportFramer: @escaping @Sendable (ByteBuffer, inout ByteBuffer) -> Void = { packet, out in
                    out.writeImmutableBuffer(packet)
                },
                recovery: RecoveryStore? = nil) {
        let shards = eventLoops.map { RoomShard(eventLoop: $0, metrics: metrics, maxWriteDelay: maxWriteDelay, transportFramer: transportFramer) }
        self.shards = shards
        self.fanout = fanout
        self.metrics = metrics
        self.shardByLoop = Dictionary(uniqueKeysWithValues: shards.map { (ObjectIdentifier($0.eventLoop), $0) })
        self.recovery = recovery
        if let recovery {
            // What the store announces (an ended or expired session's quit) goes out like any other message. Weak: the store
            // outlives no hub, but must not keep one alive.
            let publish: @Sendable (ChatMessage) -> Void = { [weak fanout] message in fanout?.publish(message) }
            if recovery.eventLoop.inEventLoop {
                recovery.publishChat = publish
            } else {
                recovery.eventLoop.execute { recovery.publishChat = publish }
            }
        }
        fanout.start(delivery: self)
    }

    public func shard(for eventLoop: any EventLoop) -> RoomShard {
        guard let shard = shardByLoop[ObjectIdentifier(eventLoop)] else {
            preconditionFailure("event loop \(eventLoop) has no room shard")
        }
        return shard
    }

    /// A reload's new `max_write_delay`, handed to every shard on its own loop; the future
    /// completes when all have it.
    public func setMaxWriteDelay(_ delay: TimeAmount) -> EventLoopFuture<Void> {
        let applied = shards.map { shard in shard.eventLoop.submit { shard.setMaxWriteDelay(delay) } }
        return EventLoopFuture.andAllSucceed(applied, on: shards[0].eventLoop)
    }

    /// Rooms with at least one local member.
    public var roomCount: Int { memberCounts.withLockedValue { $0.count } }

    public var localRooms: [String] { memberCounts.withLockedValue { Array($0.keys) } }

    /// Called on the shard's loop. The fanout hears of a room's first member before any message
    /// from it is published, so no echo or interest is missed.
    /// `joinedAt`: a restored session joins as of its recovery snapshot, so broadcasts stamped
    /// after the snapshot but still hopping to this loop reach it.
    public func join(_ member: RoomMember, room: String, shard: RoomShard, joinedAt: NIODeadline? = nil) {
        guard shard.add(member, to: room, joinedAt: joinedAt) else { return }
        memberCounts.withLockedValue { counts in
            let count = (counts[room] ?? 0) + 1
            counts[room] = count
            if count == 1 { fanout.subscribe(room: room) }
        }
    }

    public func leave(_ member: RoomMember, room: String, shard: RoomShard) {
        guard shard.remove(member, from: room) else { return }
        memberCounts.withLockedValue { counts in
            guard let count = counts[room] else { return }
            if count <= 1 {
                counts[room] = nil
                fanout.unsubscribe(room: room)
            } else {
                counts[room] = count - 1
            }
        }
    }

    public func publish(_ message: ChatMessage) {
        fanout.publish(message)
    }

    /// Hands a broadcast to every shard: inline for the current loop, one hop for the others.
    /// Tasks from one loop to another run in order, so each publisher's order is kept. The time
    /// it reached the node travels along, so that a member who joins on another loop before the
    /// hop arrives does not get what reached the node before it joined.
    ///
    /// With recovery on this runs on the store's loop and hands on the stamped broadcast (its
    /// offset attached, kept for replay).
    public func deliverLocally(_ broadcast: ChatBroadcast) {
        let arrived = NIODeadline.now()
        let broadcast = recovery.map { recovery in
            recovery.eventLoop.preconditionInEventLoop()
            return recovery.stamp(broadcast, arrivedAt: arrived)
        } ?? broadcast
        for shard in shards {
            if shard.eventLoop.inEventLoop {
                shard.deliver(broadcast, arrivedAt: arrived)
            } else {
                shard.eventLoop.execute { shard.deliver(broadcast, arrivedAt: arrived) }
            }
        }
    }
}
