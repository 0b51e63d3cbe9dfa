import NIOCore

/// One room's recent messages on this node, in the order the node delivered them, with the
/// room's vector (the last sequence delivered per origin) and each origin's floor (below which
/// this node does not hold an unbroken history). Confined to the store's loop.
final class RoomLog {
    struct Entry {
        var origin: UInt32
        var sequence: UInt64
        /// The Engine.IO frame as delivered, offset included.
        var frame: ByteBuffer
        var arrivedAt: NIODeadline
        /// Store-wide stamp order, so the store can evict the globally oldest entry.
        var serial: UInt64
    }

    struct OriginState {
        /// The last sequence delivered.
        var last: UInt64
        /// Messages at or below it may be missing here; a recovery that needs one fails.
        var floor: UInt64
        /// When the origin last said something in the room, for dropping silent origins.
        var lastHeard: NIODeadline
        /// A link reported lost messages: until the next message shows where the origin is,
        /// nothing after `last` can be vouched for.
        var gapPending = false

        /// The floor a recovery is checked against.
        var effectiveFloor: UInt64 { gapPending ? max(floor, last &+ 1) : floor }
    }

    let room: String
    private(set) var origins: [UInt32: OriginState] = [:]
    /// Origins sorted, kept so that formatting an offset per message needs no sort.
    private var sortedOrigins: [UInt32] = []
    private var entries: [Entry] = []
    private var head = 0
    private(set) var bytes = 0

    init(room: String) {
        self.room = room
    }

    var count: Int { entries.count - head }
    var isEmpty: Bool { count == 0 && origins.isEmpty }
    var first: Entry? { head < entries.count ? entries[head] : nil }
    /// The oldest kept entry's serial and arrival, read without copying its frame (per message).
    var firstSerial: UInt64? { head < entries.count ? entries[head].serial : nil }
    var firstArrivedAt: NIODeadline? { head < entries.count ? entries[head].arrivedAt : nil }

    var vector: RecoveryOffset {
        RecoveryOffset(origins.mapValues(\.last))
    }

    /// The vector's text, as attached to a broadcast (the same as `vector.string`, built
    /// without sorting or an intermediate dictionary: this runs once per message).
    var vectorString: String {
        var text = ""
        text.reserveCapacity(sortedOrigins.count * 16)
        for origin in sortedOrigins {
            if !text.isEmpty { text.append("-") }
            text.append(String(origin, radix: 36))
            text.append(".")
            text.append(String(origins[origin]!.last, radix: 36))
        }
        return text
    }

    func last(of origin: UInt32) -> UInt64 { origins[origin]?.last ?? 0 }

    /// Takes `sequence` of `origin` into the vector; false for one already delivered (a
    /// resent duplicate), which is not kept again. A first message from an origin, or one
    /// after a gap, raises the origin's floor to just below it.
    func accept(origin: UInt32, sequence: UInt64, at time: NIODeadline) -> Bool {
        guard var state = origins[origin] else {
            origins[origin] = OriginState(last: sequence, floor: sequence &- 1, lastHeard: time)
            let index = sortedOrigins.firstIndex { $0 > origin } ?? sortedOrigins.endIndex
            sortedOrigins.insert(origin, at: index)
            return true
        }
        guard sequence > state.last else { return false }
        if sequence > state.last &+ 1 {
            state.floor = max(state.floor, sequence &- 1)
        }
        state.gapPending = false
        state.last = sequence
        state.lastHeard = max(state.lastHeard, time)
        origins[origin] = state
        return true
    }

    func append(_ entry: Entry) {
        entries.append(entry)
        bytes += Self.cost(of: entry)
    }

    /// Drops the oldest entry, raising its origin's floor: the room no longer holds it.
    @discardableResult
    func evictFirst() -> Entry? {
        guard head < entries.count else { return nil }
        let entry = entries[head]
        entries[head].frame = ByteBuffer()
        head += 1
        bytes -= Self.cost(of: entry)
        if var state = origins[entry.origin] {
            state.floor = max(state.floor, entry.sequence)
            origins[entry.origin] = state
        }
        if head >= 64 && head * 2 >= entries.count {
            entries.removeFirst(head)
            head = 0
        }
        return entry
    }

    /// A link lost messages of `origin` (or of every origin, nil): recovery in this room
    /// waits for the next message to show where that origin stands.
    func noteGap(origin: UInt32?) {
        for key in origin.map({ [$0] }) ?? Array(origins.keys) {
            origins[key]?.gapPending = true
        }
    }

    /// Forgets origins silent since before `cutoff`; their messages are long evicted.
    func dropOrigins(silentSince cutoff: NIODeadline) -> [UInt32] {
        let silent = origins.filter { $0.value.lastHeard < cutoff }.map(\.key)
        guard !silent.isEmpty else { return [] }
        for origin in silent { origins[origin] = nil }
        sortedOrigins.removeAll { silent.contains($0) }
        return silent
    }

    /// The origin whose kept history does not reach down to `needed(origin)`, if any.
    func originMissingHistory(needed: (UInt32) -> UInt64) -> UInt32? {
        origins.first { $0.value.effectiveFloor > needed($0.key) }?.key
    }

    /// The kept frames above `after(origin)` for their origin, in delivery order.
    func frames(after: (UInt32) -> UInt64) -> [ByteBuffer] {
        var frames: [ByteBuffer] = []
        for index in head..<entries.count where entries[index].sequence > after(entries[index].origin) {
            frames.append(entries[index].frame)
        }
        return frames
    }

    /// What one kept message costs, roughly: its frame, the entry, the frame's buffer object
    /// (about 48 bytes) and its place in the store's stamp order (16).
    static func cost(of entry: Entry) -> Int {
        entry.frame.readableBytes + MemoryLayout<Entry>.stride + 64
    }
}
