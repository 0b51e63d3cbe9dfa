import Metrics
import NIOCore

/// The rooms of one event loop: which local connections on that loop are in which room.
///
/// All state is touched only on `eventLoop`, so delivery takes no lock. A broadcast is only
/// noted against its room; at the end of the tick each room that had broadcasts joins them into
/// one `RoomBatch` (framed once for the transport) and hands that same batch to every member,
/// which writes it with one write and one flush. The work per delivery is thereby a counter;
/// the work per member per tick is one write, as in the kernel floor's design.
///
/// A membership change writes its room's batch first, so a member never gets a broadcast from
/// before it joined and a leaving member still gets what was said while it was there. A frame
/// written to a member directly (an acknowledgement, a ping) may pass broadcasts of the same
/// tick; those are concurrent events with no order between them, and a client's own say is
/// echoed only after its acknowledgement, since publishing takes a hop.
public final class RoomShard: @unchecked Sendable { // state touched only on eventLoop (checked by preconditions)
    public let eventLoop: any EventLoop
    private var rooms: [String: LocalRoom] = [:]
    /// Rooms with broadcasts waiting for the end of the tick, each listed once.
    private var roomsWithBroadcasts: [LocalRoom] = []
    private let deliveries: Counter
    private let bytesSent: Counter
    /// Appends an Engine.IO packet, in the frame the streaming transport writes, to a buffer.
    private let transportFramer: @Sendable (ByteBuffer, inout ByteBuffer) -> Void
    private static let allocator = ByteBufferAllocator()

    /// `maxWriteDelay`: the longest a broadcast may wait under load so that writes carry more of
    /// them (see the write rounds below); zero writes at the end of every tick.
    /// `clock` is the loop's own (`EventLoop.now`) and `cpuClock` this thread's CPU time,
    /// unless a test drives time by hand.
    public init(eventLoop: any EventLoop, metrics: ChatMetrics, maxWriteDelay: TimeAmount = .milliseconds(10),
                clock: (() -> NIODeadline)? = nil, cpuClock: (() -> UInt64)? = nil,
                transportFramer: @escaping @Sendable (ByteBuffer, inout ByteBuffer) -> Void = { packet, out in
                    out.writeImmutableBuffer(packet)
                }) {
        self.eventLoop = eventLoop
        self.clock = clock ?? { eventLoop.now }
        self.cpuClock = cpuClock ?? ThreadCPUTime.nanoseconds
        self.deliveries = metrics.deliveries
        self.bytesSent = metrics.bytesSent
        self.transportFramer = transportFramer
        self.maxWriteDelayNanos = UInt64(max(0, maxWriteDelay.nanoseconds))
    }

    /// Adds a member; returns false if it already was one. `joinedAt` (default now) is the time
    /// from which broadcasts reaching the node are its: a recovered session joins as of its
    /// history snapshot.
    @discardableResult
    public func add(_ member: RoomMember, to room: String, joinedAt: NIODeadline? = nil) -> Bool {
        eventLoop.preconditionInEventLoop()
        let joinTime = (joinedAt ?? NIODeadline.now()).uptimeNanoseconds
        if let existing = rooms[room] {
            guard !existing.contains(member) else { return false }
            writeBatch(of: existing)
            existing.insert(member, joinedAt: joinTime)
            return true
        }
        let created = LocalRoom()
        created.insert(member, joinedAt: joinTime)
        rooms[room] = created
        return true
    }

    /// Removes a member; returns false if it was not one.
    @discardableResult
    public func remove(_ member: RoomMember, from room: String) -> Bool {
        eventLoop.preconditionInEventLoop()
        guard let existing = rooms[room], existing.contains(member) else { return false }
        writeBatch(of: existing)
        existing.remove(member)
        if existing.isEmpty { rooms[room] = nil }
        return true
    }

    public func memberCount(of room: String) -> Int { rooms[room]?.count ?? 0 }
    public var roomCount: Int { rooms.count }

    /// Notes a broadcast for the room's members; they get it at the end of this tick, or of a
    /// later one while the node is busy writing (at most `maxWriteDelay` later).
    ///
    /// `arrivedAt` is when the broadcast reached this node (`RoomHub.deliverLocally`); a member
    /// that joined on this loop after that, while the broadcast hopped here from another loop,
    /// does not get it.
    public func deliver(_ broadcast: ChatBroadcast, arrivedAt: NIODeadline? = nil) {
        eventLoop.preconditionInEventLoop()
        guard let room = rooms[broadcast.room] else { return }
        if let arrivedAt, room.lastJoinAt > arrivedAt.uptimeNanoseconds {
            return deliverSkippingLaterMembers(broadcast, to: room, arrivedAt: arrivedAt.uptimeNanoseconds)
        }
        if room.pendingFrames.isEmpty {
            if roomsWithBroadcasts.isEmpty {
                eventLoop.execute { self.writePendingBatches() }
            }
            roomsWithBroadcasts.append(room)
        }
        room.pendingFrames.append(broadcast.engineFrame)
        deliveries.increment(by: Int64(room.count))
        bytesSent.increment(by: Int64(room.count * broadcast.engineFrame.readableBytes))
    }

    // Write rounds. Under load the kernel's cost per write call is what a node spends its time
    // on, so the way to spend less is more broadcasts per write. After a round of writes that
    // took T, the next round waits until T has passed again (at most `maxWriteDelay`): writing
    // then takes at most half of the loop's time, and what arrives meanwhile joins the next
    // round. A round to a handful of members takes microseconds, so at light load nothing
    // waits; under load the pause grows with the round, and with it the broadcasts per write.
    // docs/PERFORMANCE.md has what this saves on the bench. T is the round's CPU time, not its
    // wall time: a round the scheduler preempted is not a reason to wait longer.
    private var lastRoundEnd: UInt64 = 0
    private var lastRoundCost: UInt64 = 0
    private var roundScheduled = false
    private var maxWriteDelayNanos: UInt64
    private let clock: () -> NIODeadline
    private let cpuClock: () -> UInt64

    /// The longest a broadcast may wait for the next write round; read on this shard's loop.
    public var maxWriteDelay: TimeAmount {
        eventLoop.preconditionInEventLoop()
        return .nanoseconds(Int64(maxWriteDelayNanos))
    }

    /// A reload's new `max_write_delay`; on this shard's loop. The next round waits by it.
    public func setMaxWriteDelay(_ delay: TimeAmount) {
        eventLoop.preconditionInEventLoop()
        maxWriteDelayNanos = UInt64(max(0, delay.nanoseconds))
    }

    private func writePendingBatches() {
        let now = clock().uptimeNanoseconds
        let earliest = lastRoundEnd &+ min(lastRoundCost, maxWriteDelayNanos)
        guard now >= earliest else {
            guard !roundScheduled else { return }
            roundScheduled = true
            eventLoop.scheduleTask(deadline: .uptimeNanoseconds(earliest)) {
                self.roundScheduled = false
                self.writeRound()
            }
            return
        }
        writeRound()
    }

    private func writeRound() {
        let cpuStart = cpuClock()
        let due = roomsWithBroadcasts
        roomsWithBroadcasts.removeAll(keepingCapacity: true)
        for room in due {
            writeBatch(of: room)
        }
        lastRoundCost = cpuClock() &- cpuStart
        lastRoundEnd = clock().uptimeNanoseconds
    }

    /// The rare path: someone joined the room after the broadcast reached the node. What the
    /// room already had waiting goes out first, then this broadcast alone to those who were there.
    private func deliverSkippingLaterMembers(_ broadcast: ChatBroadcast, to room: LocalRoom, arrivedAt: UInt64) {
        writeBatch(of: room)
        let recipients = room.members(joinedBefore: arrivedAt)
        guard !recipients.isEmpty else { return }
        write([broadcast.engineFrame], to: recipients)
        deliveries.increment(by: Int64(recipients.count))
        bytesSent.increment(by: Int64(recipients.count * broadcast.engineFrame.readableBytes))
    }

    private func writeBatch(of room: LocalRoom) {
        guard !room.pendingFrames.isEmpty else { return }
        let frames = room.pendingFrames
        room.pendingFrames = []
        // A snapshot: a member that leaves (or makes others leave) while being written still
        // gets this batch, and one that joins meanwhile does not.
        write(frames, to: room.members)
    }

    /// Frames the packets once for the transport and hands the same batch to every member.
    private func write(_ frames: [ByteBuffer], to members: [RoomMember]) {
        var framed = Self.allocator.buffer(capacity: frames.reduce(0) { $0 + $1.readableBytes + 10 })
        for frame in frames {
            transportFramer(frame, &framed)
        }
        let batch = RoomBatch(engineFrames: frames, transportBytes: framed)
        for member in members {
            member.deliver(batch)
        }
    }
}

/// One room on one shard: its members (an array to iterate fast, an index to remove in O(1)),
/// when each joined, and the broadcasts waiting for the end of the tick.
final class LocalRoom {
    private(set) var members: [RoomMember] = []
    /// Monotonic nanoseconds, parallel to `members`.
    private var joinTimes: [UInt64] = []
    private var positions: [ObjectIdentifier: Int] = [:]
    var pendingFrames: [ByteBuffer] = []
    /// The latest join: a broadcast that reached the node before it may skip someone.
    private(set) var lastJoinAt: UInt64 = 0

    var count: Int { members.count }
    var isEmpty: Bool { members.isEmpty }

    func contains(_ member: RoomMember) -> Bool {
        positions[ObjectIdentifier(member)] != nil
    }

    func insert(_ member: RoomMember, joinedAt: UInt64 = 0) {
        let id = ObjectIdentifier(member)
        guard positions[id] == nil else { return }
        positions[id] = members.count
        members.append(member)
        joinTimes.append(joinedAt)
        lastJoinAt = max(lastJoinAt, joinedAt)
    }

    func remove(_ member: RoomMember) {
        guard let position = positions.removeValue(forKey: ObjectIdentifier(member)) else { return }
        let last = members.removeLast()
        let lastJoin = joinTimes.removeLast()
        if position < members.count {
            members[position] = last
            joinTimes[position] = lastJoin
            positions[ObjectIdentifier(last)] = position
        }
    }

    /// Members that joined at or before `time`.
    func members(joinedBefore time: UInt64) -> [RoomMember] {
        members.indices.filter { joinTimes[$0] <= time }.map { members[$0] }
    }
}
