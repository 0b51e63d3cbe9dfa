import NIOCore

/// When the cluster fanout reads the slot map again. Every node of a chatmesh cluster sees a
/// failover at the same moment (their links to the dead primary drop together), so the reads
/// are rate-limited and jittered: at most one in flight, starts at least `minimumGap` apart,
/// each start a random 0…`jitter` later than it could be. Requests while one is in flight or
/// scheduled fold into one more read after it. While reads keep finding nothing new (a dead
/// primary not yet replaced), the fanout widens the gap (`gap`, up to `maximumGap`).
/// Confined to the fanout's event loop.
final class RedisTopologyRefresher {
    static let minimumGap = TimeAmount.milliseconds(100)
    static let defaultJitter = TimeAmount.milliseconds(100)
    static let maximumGap = TimeAmount.milliseconds(800)

    /// The pause between starts now: `minimumGap`, doubled by each `slowDown()` up to
    /// `maximumGap`, back to `minimumGap` at `speedUp()`.
    private(set) var gap = RedisTopologyRefresher.minimumGap

    private let eventLoop: any EventLoop
    private let jitter: TimeAmount
    private let perform: () -> EventLoopFuture<Void>
    private var inFlight = false
    private var wantedAgain = false
    private var scheduled: Scheduled<Void>?
    private var lastStart: NIODeadline?
    private var stopped = false
    /// Reads started (for tests and the log).
    private(set) var started = 0

    /// `perform` reads and applies the topology; its future completes when that is done.
    init(eventLoop: any EventLoop, jitter: TimeAmount = RedisTopologyRefresher.defaultJitter,
         perform: @escaping () -> EventLoopFuture<Void>) {
        self.eventLoop = eventLoop
        self.jitter = jitter
        self.perform = perform
    }

    var isBusy: Bool { inFlight || scheduled != nil }

    /// Asks for a read soon (see the type's comment for how soon).
    func request() {
        guard !stopped else { return }
        if inFlight {
            wantedAgain = true
            return
        }
        guard scheduled == nil else { return }
        let now = eventLoop.now
        var at = now
        if let lastStart, lastStart + gap > now { at = lastStart + gap }
        let jitterNanos = jitter.nanoseconds > 0 ? Int64.random(in: 0...jitter.nanoseconds) : 0
        at = at + .nanoseconds(jitterNanos)
        scheduled = eventLoop.assumeIsolated().scheduleTask(deadline: at) { [self] in
            scheduled = nil
            start()
        }
    }

    private func start() {
        guard !stopped else { return }
        inFlight = true
        wantedAgain = false
        lastStart = eventLoop.now
        started += 1
        perform().assumeIsolated().whenComplete { [self] _ in
            inFlight = false
            if wantedAgain { request() }
        }
    }

    /// The last read found nothing new while something is still wrong: wait longer next time.
    func slowDown() {
        gap = min(Self.maximumGap, gap + gap)
    }

    /// The map changed, or all is well: reads may follow at the minimum gap again.
    func speedUp() {
        gap = Self.minimumGap
    }

    func stop() {
        stopped = true
        scheduled?.cancel()
        scheduled = nil
    }
}
