import ClusterConfig
import NIOCore

/// The says of a cluster fanout that Redis has not acknowledged: one queue per target node
/// (a slot's primary, or a node an `-ASK` named) plus one for slots no known node owns, and
/// per slot the says on the wire. Pure bookkeeping: the fanout does the sending.
///
/// Per-room order is the invariant: a room lives in one slot, and for each slot
/// - every queue holds its says in `sequence` order (queues are merged, never appended
///   out of order), and
/// - its says are on the wire to one node at a time (`canSend`): a say for a slot that moved
///   waits until the old node has answered (or its connection died) for every say of the slot
///   sent there, and the ones it refused (MOVED, CLUSTERDOWN, a lost connection) go back to
///   a queue first, ahead of the slot's later says.
struct RedisClusterOutbox {
    private(set) var queues: [HostPort: CircularBuffer<RedisClusterPublish>] = [:]
    /// Says for slots without a known owner (no topology yet, or an uncovered slot).
    private(set) var unrouted = CircularBuffer<RedisClusterPublish>()

    /// The says of one slot sent to `target` and not yet answered, and those of them that
    /// came back refused while others were still out.
    private struct Flight {
        var target: HostPort
        var count: Int
        var refused: [RedisClusterPublish]
    }

    private var flights: [Int: Flight] = [:]
    private(set) var queuedCount = 0
    private(set) var inFlightCount = 0

    var isEmpty: Bool { queuedCount == 0 && inFlightCount == 0 }

    /// Where a say should go: the node an ASK named, else the slot's owner (nil: unknown).
    typealias Owner = (Int) -> HostPort?

    private static func target(of publish: RedisClusterPublish, owner: Owner) -> HostPort? {
        publish.askTarget ?? owner(publish.slot)
    }

    /// A new say (its sequence is the highest yet, so appending keeps the order).
    mutating func enqueue(_ publish: RedisClusterPublish, owner: Owner) {
        queuedCount += 1
        if let target = Self.target(of: publish, owner: owner) {
            queues[target, default: []].append(publish)
        } else {
            unrouted.append(publish)
        }
    }

    func head(of target: HostPort) -> RedisClusterPublish? {
        queues[target]?.first
    }

    /// False while says of `slot` are out to another node.
    func canSend(slot: Int, to target: HostPort) -> Bool {
        flights[slot].map { $0.target == target } ?? true
    }

    /// Takes the head of `target`'s queue for sending (after `head` and `canSend` said so).
    mutating func takeHead(of target: HostPort) -> RedisClusterPublish? {
        guard let publish = queues[target]?.popFirst() else { return nil }
        if queues[target]?.isEmpty == true { queues[target] = nil }
        queuedCount -= 1
        inFlightCount += 1
        flights[publish.slot, default: Flight(target: target, count: 0, refused: [])].count += 1
        return publish
    }

    /// Redis took it (or refused it for good: an error that no retry fixes).
    mutating func answered(_ publish: RedisClusterPublish, owner: Owner) {
        land(publish.slot, refused: nil, owner: owner)
    }

    /// It must be sent again (MOVED, ASK, CLUSTERDOWN, TRYAGAIN, the connection lost): it goes
    /// back to a queue once every say of its slot sent with it is back, ahead of the slot's
    /// later says.
    mutating func refused(_ publish: RedisClusterPublish, owner: Owner) {
        land(publish.slot, refused: publish, owner: owner)
    }

    private mutating func land(_ slot: Int, refused publish: RedisClusterPublish?, owner: Owner) {
        guard var flight = flights[slot] else { return }
        inFlightCount -= 1
        flight.count -= 1
        if let publish { flight.refused.append(publish) }
        guard flight.count == 0 else {
            flights[slot] = flight
            return
        }
        flights[slot] = nil
        queuedCount += flight.refused.count
        for (target, says) in Self.grouped(flight.refused, owner: owner) {
            merge(says, into: target)
        }
    }

    /// Acknowledged says whose echo never came (the shard's subscriber or subscription was
    /// lost first): they wait again, each ahead of the later says of its slot.
    mutating func requeue(_ says: [RedisClusterPublish], owner: Owner) {
        guard !says.isEmpty else { return }
        queuedCount += says.count
        for (target, group) in Self.grouped(says.sorted { $0.sequence < $1.sequence }, owner: owner) {
            merge(group, into: target)
        }
    }

    /// After the slot map changed: every queued say moves to the queue of its slot's owner now.
    mutating func reroute(owner: Owner) {
        var moving: [RedisClusterPublish] = []
        for (target, queue) in queues {
            var staying = CircularBuffer<RedisClusterPublish>()
            for publish in queue {
                if Self.target(of: publish, owner: owner) == target { staying.append(publish) } else { moving.append(publish) }
            }
            queues[target] = staying.isEmpty ? nil : staying
        }
        var stillUnrouted = CircularBuffer<RedisClusterPublish>()
        for publish in unrouted {
            if Self.target(of: publish, owner: owner) == nil { stillUnrouted.append(publish) } else { moving.append(publish) }
        }
        unrouted = stillUnrouted
        moving.sort { $0.sequence < $1.sequence }
        for (target, says) in Self.grouped(moving, owner: owner) {
            merge(says, into: target)
        }
    }

    /// Says for a node that is no longer a target (it left the topology) forget its ASK.
    mutating func forgetAsks(to node: HostPort, owner: Owner) {
        guard let queue = queues[node], queue.contains(where: { $0.askTarget == node }) else { return }
        queues[node] = CircularBuffer(queue.map { publish in
            var publish = publish
            if publish.askTarget == node { publish.askTarget = nil }
            return publish
        })
        reroute(owner: owner)
    }

    /// Drops waiting says handed over before `deadline` (uptime nanoseconds); returns how many.
    mutating func dropWaiting(enqueuedBefore deadline: UInt64) -> Int {
        var dropped = 0
        for target in Array(queues.keys) {
            guard var queue = queues[target] else { continue }
            let before = queue.count
            // Sorted by sequence, which follows arrival: the old ones are in front.
            queue.removeAll { $0.enqueuedAt < deadline }
            dropped += before - queue.count
            queues[target] = queue.isEmpty ? nil : queue
        }
        let before = unrouted.count
        unrouted.removeAll { $0.enqueuedAt < deadline }
        dropped += before - unrouted.count
        queuedCount -= dropped
        return dropped
    }

    /// Drops the oldest waiting say (the buffer is full); false when nothing waits.
    mutating func dropOldest() -> Bool {
        var oldest: (target: HostPort?, sequence: UInt64)?
        for (target, queue) in queues {
            if let first = queue.first, oldest.map({ first.sequence < $0.sequence }) ?? true { oldest = (target, first.sequence) }
        }
        if let first = unrouted.first, oldest.map({ first.sequence < $0.sequence }) ?? true { oldest = (nil, first.sequence) }
        guard let oldest else { return false }
        if let target = oldest.target {
            queues[target]?.removeFirst()
            if queues[target]?.isEmpty == true { queues[target] = nil }
        } else {
            unrouted.removeFirst()
        }
        queuedCount -= 1
        return true
    }

    /// Says grouped by the queue they go to (nil: unrouted), each group in sequence order.
    private static func grouped(_ says: [RedisClusterPublish], owner: Owner) -> [(HostPort?, [RedisClusterPublish])] {
        var order: [HostPort?] = []
        var groups: [HostPort?: [RedisClusterPublish]] = [:]
        for publish in says {
            let target = Self.target(of: publish, owner: owner)
            if groups[target] == nil { order.append(target) }
            groups[target, default: []].append(publish)
        }
        return order.map { ($0, groups[$0]!) }
    }

    /// Merges says (in sequence order) into a queue, keeping it in sequence order.
    private mutating func merge(_ says: [RedisClusterPublish], into target: HostPort?) {
        let existing = target.map { queues[$0] ?? [] } ?? unrouted
        var merged = CircularBuffer<RedisClusterPublish>(initialCapacity: existing.count + says.count)
        var index = existing.startIndex
        for publish in says {
            while index != existing.endIndex, existing[index].sequence < publish.sequence {
                merged.append(existing[index])
                index = existing.index(after: index)
            }
            merged.append(publish)
        }
        while index != existing.endIndex {
            merged.append(existing[index])
            index = existing.index(after: index)
        }
        if let target { queues[target] = merged } else { unrouted = merged }
    }
}
