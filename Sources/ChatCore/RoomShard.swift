import Metrics
import NIOCore

/// The rooms of one event loop: which local connections on that loop are in which room.
///
/// All state is touched only on `eventLoop`, so delivery takes no lock. A broadcast writes the
/// same frame to every member and flushes each touched connection once at the end of the
/// tick, so several broadcasts in one tick share one write system call per connection.
public final class RoomShard: @unchecked Sendable {
    public let eventLoop: any EventLoop
    private var rooms: [String: MemberList] = [:]
    private var pendingFlush: [RoomMember] = []
    private let deliveries: Counter
    private let bytesSent: Counter
    /// Wraps an Engine.IO packet in the WebSocket frame the transport writes.
    private let webSocketFramer: @Sendable (ByteBuffer) -> ByteBuffer

    public init(eventLoop: any EventLoop, metrics: ChatMetrics,
                webSocketFramer: @escaping @Sendable (ByteBuffer) -> ByteBuffer = { $0 }) {
        self.eventLoop = eventLoop
        self.deliveries = metrics.deliveries
        self.bytesSent = metrics.bytesSent
        self.webSocketFramer = webSocketFramer
    }

    /// Adds a member; returns false if it already was one.
    @discardableResult
    public func add(_ member: RoomMember, to room: String) -> Bool {
        eventLoop.preconditionInEventLoop()
        if let list = rooms[room] {
            return list.insert(member)
        }
        let list = MemberList()
        list.insert(member)
        rooms[room] = list
        return true
    }

    /// Removes a member; returns false if it was not one.
    @discardableResult
    public func remove(_ member: RoomMember, from room: String) -> Bool {
        eventLoop.preconditionInEventLoop()
        guard let list = rooms[room], list.remove(member) else { return false }
        if list.isEmpty { rooms[room] = nil }
        return true
    }

    public func memberCount(of room: String) -> Int { rooms[room]?.count ?? 0 }
    public var roomCount: Int { rooms.count }

    public func deliver(_ broadcast: ChatBroadcast) {
        eventLoop.preconditionInEventLoop()
        guard let list = rooms[broadcast.room] else { return }
        let frame = broadcast.engineFrame
        let frames = BroadcastFrames(engineFrame: frame, webSocketFrame: webSocketFramer(frame))
        for member in list.members {
            member.enqueueBroadcast(frames)
            if !member.broadcastFlushPending {
                member.broadcastFlushPending = true
                if pendingFlush.isEmpty {
                    eventLoop.execute { self.flushPending() }
                }
                pendingFlush.append(member)
            }
        }
        deliveries.increment(by: Int64(list.count))
        bytesSent.increment(by: Int64(list.count * frame.readableBytes))
    }

    private func flushPending() {
        let members = pendingFlush
        pendingFlush.removeAll(keepingCapacity: true)
        for member in members {
            member.broadcastFlushPending = false
            member.flushBroadcasts()
        }
    }
}

/// Members of one room on one shard: an array to iterate fast, an index to remove in O(1).
final class MemberList {
    private(set) var members: [RoomMember] = []
    private var positions: [ObjectIdentifier: Int] = [:]

    var count: Int { members.count }
    var isEmpty: Bool { members.isEmpty }

    @discardableResult
    func insert(_ member: RoomMember) -> Bool {
        let id = ObjectIdentifier(member)
        guard positions[id] == nil else { return false }
        positions[id] = members.count
        members.append(member)
        return true
    }

    @discardableResult
    func remove(_ member: RoomMember) -> Bool {
        guard let position = positions.removeValue(forKey: ObjectIdentifier(member)) else { return false }
        let last = members.removeLast()
        if position < members.count {
            members[position] = last
            positions[ObjectIdentifier(last)] = position
        }
        return true
    }
}
