import Histogram
import Synchronization

/// When the senders start, when the measured window opens and closes (monotonic ns).
struct BenchSchedule: Sendable {
    var start: UInt64
    var measureStart: UInt64
    var measureEnd: UInt64
}

/// An Int shared across event loops (room member counts, connection progress).
final class SharedCounter: Sendable {
    private let value = Atomic<Int>(0)
    init() {}
    @inline(__always) func add(_ n: Int) { value.add(n, ordering: .relaxed) }
    @inline(__always) func load() -> Int { value.load(ordering: .relaxed) }
}

/// What every connection shares: the options and a few counters (all atomics).
final class BenchShared: Sendable {
    let options: BenchOptions
    /// Clients that have seen their own join echo and are still connected, per room.
    let roomMembers: [SharedCounter]
    let pending = SharedCounter()      // connects started, not yet Socket.IO-connected or failed
    let connected = SharedCounter()    // Socket.IO CONNECT acknowledged (`40{…}`)
    let joined = SharedCounter()
    let failed = SharedCounter()       // closed before Socket.IO CONNECT
    let disconnects = SharedCounter()  // closed after CONNECT, before the bench ended
    private let ending = Atomic<Bool>(false)

    init(options: BenchOptions) {
        self.options = options
        self.roomMembers = (0..<options.rooms).map { _ in SharedCounter() }
    }

    var isEnding: Bool { ending.load(ordering: .relaxed) }
    func markEnding() { ending.store(true, ordering: .relaxed) }
}

/// Per event loop: the histograms and counters its connections write without locks. Only
/// touched on its own loop (the runner holds it in a `NIOLoopBound`); read at the end through
/// `eventLoop.submit`.
final class LoopStats {
    var schedule: BenchSchedule?
    var connections: [BenchConnection] = []
    /// End-to-end latency of measured deliveries, µs.
    var latency = Histogram<UInt64>(lowestDiscernibleValue: 1, highestTrackableValue: 3_600_000_000, numberOfSignificantValueDigits: .three)
    /// TCP connect start to Socket.IO CONNECT acknowledged, µs.
    var connectTimes = Histogram<UInt64>(lowestDiscernibleValue: 1, highestTrackableValue: 3_600_000_000, numberOfSignificantValueDigits: .three)
    var framesIn = 0
    var sayFrames = 0
    var windowDeliveries = 0     // say frames that arrived inside the measured window
    var foreignSays = 0          // broadcast_say whose text is not a bench stamp or names an unknown sender
    var unexpectedDeliveries = 0 // says received by a client that never saw its own join echo
    var joinFrames = 0
    var errorEvents = 0          // `error` events (rate_limited, …)
    var pingsAnswered = 0
    var connectErrors = 0        // CONNECT_ERROR or HTTP refusal

    init() {}
}
