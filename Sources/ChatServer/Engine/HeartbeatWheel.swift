import NIOCore

/// The heartbeat deadlines of every session on one event loop (when to send the next ping,
/// when a pong is overdue), kept in a timing wheel that ticks on that loop.
///
/// One NIO scheduled task per session costs an idle connection a promise, two closures and a
/// heap entry, and every pong would cancel one task and schedule another. A wheel entry is a
/// reference and a number. The wheel wakes on tick boundaries of the loop's clock, so a
/// deadline fires less than one tick late (plus the loop's own delay), and the tick is a tenth
/// of the shortest heartbeat time: a 25 s ping interval moves by at most half a second. (A
/// session also checks its deadlines whenever its client is heard from, so a late tick never
/// lets a client past its pong deadline.)
///
/// Entries are never removed: a session that moves or cancels its deadline bumps its
/// generation, and the old entry is skipped when its slot comes round.
final class HeartbeatWheel: @unchecked Sendable {  // unchecked: its state is touched only on `eventLoop` (checked by schedule)
    /// Told when its deadline passed, with the generation it was scheduled under.
    protocol Target: AnyObject {
        func heartbeatDeadlinePassed(generation: UInt32)
    }

    private struct Entry {
        let target: any Target
        let generation: UInt32
        /// The deadline itself, not its tick: `retune` re-files entries under a new tick.
        let dueNanos: UInt64
    }

    let eventLoop: any EventLoop
    /// Changed only by `retune`, on `eventLoop`.
    private(set) var tick: TimeAmount
    private var slots: [[Entry]]
    /// The last tick whose slot was processed.
    private var processedTick: UInt64
    private var entryCount = 0
    /// The wake-up at the next tick boundary, while entries wait.
    private var ticker: Scheduled<Void>?

    /// - Parameter longestDelay: the longest deadline that will be scheduled; the wheel has a
    ///   slot for every tick up to it, so each slot holds only entries due at that tick.
    init(eventLoop: any EventLoop, shortestDelay: TimeAmount, longestDelay: TimeAmount) {
        self.eventLoop = eventLoop
        let (tick, slotCount) = Self.shape(shortestDelay: shortestDelay, longestDelay: longestDelay)
        self.tick = tick
        self.slots = Array(repeating: [], count: slotCount)
        self.processedTick = eventLoop.now.uptimeNanoseconds / UInt64(tick.nanoseconds)
    }

    /// A tenth of the shortest delay (5 ms to 500 ms), and a slot per tick up to the longest.
    private static func shape(shortestDelay: TimeAmount, longestDelay: TimeAmount) -> (tick: TimeAmount, slots: Int) {
        let tickNanos = min(max(shortestDelay.nanoseconds / 10, 5_000_000), 500_000_000)
        return (.nanoseconds(tickNanos), Int(max(longestDelay.nanoseconds, 0) / tickNanos) + 2)
    }

    private func tickNumber(of deadline: NIODeadline) -> UInt64 {
        deadline.uptimeNanoseconds / UInt64(tick.nanoseconds)
    }

    /// The first tick at or after `nanos`: processing it never fires the deadline early.
    private func dueTick(_ nanos: UInt64) -> UInt64 {
        let tickNanos = UInt64(tick.nanoseconds)
        return (nanos + tickNanos - 1) / tickNanos
    }

    /// Takes new heartbeat times (a reload changed `[engineio]`): a new tick and slot count,
    /// with every waiting entry re-filed under them, so each deadline keeps its time (one new
    /// tick late at most) and a shorter new delay is not served by a coarse old tick. The
    /// caller passes bounds that cover the sessions still on the old times too.
    func retune(shortestDelay: TimeAmount, longestDelay: TimeAmount) {
        eventLoop.preconditionInEventLoop()
        let (newTick, slotCount) = Self.shape(shortestDelay: shortestDelay, longestDelay: longestDelay)
        guard newTick != tick || slotCount != slots.count else { return }
        let waiting = slots.joined()
        ticker?.cancel()
        ticker = nil
        tick = newTick
        slots = Array(repeating: [], count: slotCount)
        // Entries due before now (the loop was busy) go in the next tick, as `schedule` files them.
        processedTick = tickNumber(of: eventLoop.now)
        entryCount = 0
        for entry in waiting { file(entry) }
        if entryCount > 0 { scheduleTicker() }
    }

    /// Calls `target.heartbeatDeadlinePassed(generation:)` once `delay` has passed.
    func schedule(_ target: any Target, generation: UInt32, after delay: TimeAmount) {
        schedule(target, generation: generation, at: eventLoop.now + delay)
    }

    /// Calls `target.heartbeatDeadlinePassed(generation:)` once the loop's clock reaches `deadline`.
    func schedule(_ target: any Target, generation: UInt32, at deadline: NIODeadline) {
        eventLoop.preconditionInEventLoop()
        if ticker == nil {
            // Idle until now: nothing is waiting, so the slots before now need no visit.
            processedTick = max(processedTick, tickNumber(of: eventLoop.now))
        }
        file(Entry(target: target, generation: generation, dueNanos: deadline.uptimeNanoseconds))
        if ticker == nil { scheduleTicker() }
    }

    /// Puts `entry` in the slot of its due tick, or as far ahead as the wheel reaches.
    private func file(_ entry: Entry) {
        // Tick k is processed once the clock is at k * tick or later: the first tick at or after
        // the deadline never fires early, and is less than a tick late.
        let due = max(dueTick(entry.dueNanos), processedTick + 1)
        let maxAhead = UInt64(slots.count - 1)
        let clampedDue = min(due, processedTick + maxAhead)
        slots[Int(clampedDue % UInt64(slots.count))].append(entry)
        entryCount += 1
    }

    /// Wakes at the next tick boundary, not one tick from now: a wheel started mid-tick would
    /// otherwise process every slot up to a tick late.
    private func scheduleTicker() {
        let next = NIODeadline.uptimeNanoseconds((processedTick + 1) * UInt64(tick.nanoseconds))
        ticker = eventLoop.scheduleTask(deadline: next) { [unowned self] in
            self.advance()
        }
    }

    /// Processes every slot up to now (several, if the loop was busy past a tick).
    private func advance() {
        let now = tickNumber(of: eventLoop.now)
        var entries: [Entry] = []
        while processedTick < now {
            processedTick += 1
            let index = Int(processedTick % UInt64(slots.count))
            guard !slots[index].isEmpty else { continue }
            swap(&entries, &slots[index])
            entryCount -= entries.count
            for entry in entries {
                let due = dueTick(entry.dueNanos)
                if due > processedTick {
                    // Farther out than the wheel reaches: goes round once more.
                    let ahead = min(due, processedTick + UInt64(slots.count - 1))
                    slots[Int(ahead % UInt64(slots.count))].append(entry)
                    entryCount += 1
                } else {
                    entry.target.heartbeatDeadlinePassed(generation: entry.generation)
                }
            }
            // Hand the slot its storage back, so a steady load reuses it rather than reallocating.
            entries.removeAll(keepingCapacity: true)
            if slots[index].isEmpty { swap(&entries, &slots[index]) }
        }
        // Cleared only now: while targets run, `schedule` must see a live ticker (an idle wheel
        // skips the slots up to now, and these may not all be processed yet).
        ticker = nil
        if entryCount > 0 { scheduleTicker() }
    }

    /// Entries waiting, including those whose session has moved on (for tests and metrics).
    var pendingEntries: Int { entryCount }
}
