import NIOCore
import Synchronization

/// The client sockets of one event loop: how many are open, which are waiting for a request
/// head (and since when), and which have never completed one.
///
/// A connection waits for a request head from its accept, and again from the end of each
/// response on a keep-alive connection; `header_timeout` after it started waiting it is cut,
/// however many bytes it trickled meanwhile (a slowloris). Waiting connections join a FIFO
/// in the order they started waiting, and all wait the same time, so the oldest is always the
/// next to expire: one scheduled task, for the first, serves the whole loop.
///
/// A connection that has never completed a request head (nor a WebSocket upgrade) is
/// *unfinished*: when the node's socket cap is reached, the oldest unfinished one is cut to
/// make room, the way the mesh drops its oldest pending handshake.
///
/// The two counts are atomics, read by other loops (the cap check, `/metrics`) and written
/// only by this one; everything else is touched only on `eventLoop`.
final class ClientSocketRegistry: @unchecked Sendable {  // unchecked: the queues and timer are touched only on `eventLoop`
    /// Why a connection was cut (the `reason` label of `chatmesh_connections_cut_total`).
    enum CutReason: String, Sendable, CaseIterable {
        /// No complete request head within `header_timeout` of the accept, or a keep-alive
        /// connection that started a head and did not finish it in time.
        case headerTimeout = "header_timeout"
        /// Cut at the socket cap to make room, or refused there.
        case socketCap = "socket_cap"
        /// A keep-alive connection that sent nothing for `header_timeout` after its last
        /// response: ordinary housekeeping, counted apart so the two above stay a signal.
        case keepaliveTimeout = "keepalive_timeout"
    }

    let eventLoop: any EventLoop
    /// `[limits] header_timeout`; a reload changes it on this loop (`setHeaderTimeout`).
    private(set) var headerTimeout: TimeAmount
    private let countCut: @Sendable (CutReason) -> Void
    private var awaitingHead = ArrivalQueue<ClientConnectionTracker>()
    private var unfinished = ArrivalQueue<ClientConnectionTracker>()
    /// Wakes when the first waiting connection's time is up.
    private var timer: Scheduled<Void>?
    /// Connections cut and already out of the open count, until their handlers are removed
    /// (`closed`); the tracker is alive until then, so its identity is not reused meanwhile.
    private var released = Set<ObjectIdentifier>()
    private let openAtomic = Atomic<Int>(0)
    private let unfinishedAtomic = Atomic<Int>(0)
    /// Uptime (ns) when the oldest unfinished connection was accepted; 0 when there is none.
    private let oldestUnfinishedAtomic = Atomic<UInt64>(0)
    /// Uptime (ns) since when the longest-waiting connection waits for a head; 0 when none does.
    private let oldestAwaitingAtomic = Atomic<UInt64>(0)

    init(eventLoop: any EventLoop, headerTimeout: TimeAmount, countCut: @escaping @Sendable (CutReason) -> Void) {
        self.eventLoop = eventLoop
        self.headerTimeout = headerTimeout
        self.countCut = countCut
    }

    /// Open client sockets on this loop (from any thread).
    var openCount: Int { openAtomic.load(ordering: .relaxed) }
    /// Open sockets on this loop that have not completed a request head or upgrade (from any thread).
    var unfinishedCount: Int { unfinishedAtomic.load(ordering: .relaxed) }
    /// When this loop's oldest unfinished connection was accepted, nil if it has none (from
    /// any thread: the gate evicts the node's oldest).
    var oldestUnfinishedSince: NIODeadline? {
        let nanos = oldestUnfinishedAtomic.load(ordering: .relaxed)
        return nanos == 0 ? nil : .uptimeNanoseconds(nanos)
    }
    /// Since when this loop's longest-waiting connection waits for a request head (from any
    /// thread: with no unfinished connection left, the gate evicts an idle keep-alive one).
    var oldestAwaitingSince: NIODeadline? {
        let nanos = oldestAwaitingAtomic.load(ordering: .relaxed)
        return nanos == 0 ? nil : .uptimeNanoseconds(nanos)
    }
    /// Connections waiting for a request head, unfinished or between keep-alive requests.
    var awaitingHeadCount: Int { awaitingHead.count }

    // MARK: Told by the connection's tracker (on this loop)

    /// A connection was accepted: it is unfinished and waits for its first request head.
    func opened(_ tracker: ClientConnectionTracker) {
        eventLoop.preconditionInEventLoop()
        openAtomic.add(1, ordering: .relaxed)
        let now = eventLoop.now
        tracker.unfinishedEntry = unfinished.append(tracker, since: now)
        unfinishedAtomic.add(1, ordering: .relaxed)
        if unfinished.count == 1 { publish(unfinished.first, to: oldestUnfinishedAtomic) }
        startWaiting(tracker, since: now)
    }

    /// A request head arrived, or the connection became a WebSocket: no header timer runs
    /// until it waits for a head again, and it is no longer unfinished.
    func headCompleted(_ tracker: ClientConnectionTracker) {
        stopWaiting(tracker)
        leaveUnfinished(tracker)
    }

    /// A response ended on a connection that stays open: it waits for its next request head.
    func awaitingNextHead(_ tracker: ClientConnectionTracker) {
        guard tracker.awaitingEntry == nil else { return }
        startWaiting(tracker, since: eventLoop.now)
    }

    /// The connection is gone (closed, or its handlers removed): it leaves the open count
    /// once, however many of these it is told.
    func closed(_ tracker: ClientConnectionTracker) {
        stopWaiting(tracker)
        leaveUnfinished(tracker)
        if released.remove(ObjectIdentifier(tracker)) == nil {
            openAtomic.subtract(1, ordering: .relaxed)
        }
    }

    // MARK: Cuts

    /// Cuts the oldest unfinished connection of this loop to make room for a new one;
    /// false if there is none.
    @discardableResult
    func evictOldestUnfinished() -> Bool {
        eventLoop.preconditionInEventLoop()
        guard let oldest = unfinished.first?.element else { return false }
        cut(oldest, reason: .socketCap)
        return true
    }

    /// Cuts the connection of this loop that has waited longest for a request head (with no
    /// unfinished ones left: an idle keep-alive connection, which its client simply reopens);
    /// false if none waits.
    @discardableResult
    func evictLongestAwaiting() -> Bool {
        eventLoop.preconditionInEventLoop()
        guard let oldest = awaitingHead.first?.element else { return false }
        cut(oldest, reason: .socketCap)
        return true
    }

    private func cut(_ tracker: ClientConnectionTracker, reason: CutReason) {
        stopWaiting(tracker)
        leaveUnfinished(tracker)
        countCut(reason)
        tracker.cut(reason: reason)
        // Its descriptor is closed now, on this turn: it leaves the open count at once, not
        // when its handlers are removed a loop turn later (`closed`), or every connection the
        // loop admits at the cap meanwhile would pass it by one.
        if released.insert(ObjectIdentifier(tracker)).inserted {
            openAtomic.subtract(1, ordering: .relaxed)
        }
    }

    /// A reload's `header_timeout`, on this loop. Every connection waits the same time, so the
    /// queue stays in expiry order; the timer is re-armed for the first one's new deadline
    /// (those already waiting longer than the new timeout are cut at once).
    func setHeaderTimeout(_ timeout: TimeAmount) {
        eventLoop.preconditionInEventLoop()
        guard timeout != headerTimeout else { return }
        headerTimeout = timeout
        timer?.cancel()
        timer = nil
        cutExpired()
    }

    // MARK: The header timer

    private func startWaiting(_ tracker: ClientConnectionTracker, since: NIODeadline) {
        tracker.heardWhileAwaitingHead = false
        tracker.awaitingEntry = awaitingHead.append(tracker, since: since)
        if awaitingHead.count == 1 { publish(awaitingHead.first, to: oldestAwaitingAtomic) }
        armTimer()
    }

    private func stopWaiting(_ tracker: ClientConnectionTracker) {
        guard let entry = tracker.awaitingEntry else { return }
        tracker.awaitingEntry = nil
        let wasFirst = awaitingHead.first === entry
        awaitingHead.remove(entry)
        if wasFirst { publish(awaitingHead.first, to: oldestAwaitingAtomic) }
        // The timer stays armed for the old first entry: when it fires it finds nothing due
        // and re-arms for the new first. Cheaper than a cancel and a reschedule per request.
    }

    private func leaveUnfinished(_ tracker: ClientConnectionTracker) {
        guard let entry = tracker.unfinishedEntry else { return }
        tracker.unfinishedEntry = nil
        let wasFirst = unfinished.first === entry
        unfinished.remove(entry)
        unfinishedAtomic.subtract(1, ordering: .relaxed)
        if wasFirst { publish(unfinished.first, to: oldestUnfinishedAtomic) }
    }

    private func publish(_ first: ArrivalQueue<ClientConnectionTracker>.Entry?, to atomic: borrowing Atomic<UInt64>) {
        // max(1, …): 0 means "none", and a loop clock could start at 0 (an embedded loop's does).
        let nanos = first.map { max(1, $0.since.uptimeNanoseconds) } ?? 0
        atomic.store(nanos, ordering: .relaxed)
    }

    private func armTimer() {
        guard timer == nil, let first = awaitingHead.first else { return }
        timer = eventLoop.scheduleTask(deadline: first.since + headerTimeout) { [self] in
            timer = nil
            cutExpired()
        }
    }

    private func cutExpired() {
        let now = eventLoop.now
        while let first = awaitingHead.first, first.since + headerTimeout <= now {
            let tracker = first.element
            let idleKeepAlive = !tracker.isUnfinished && !tracker.heardWhileAwaitingHead
            cut(tracker, reason: idleKeepAlive ? .keepaliveTimeout : .headerTimeout)
        }
        armTimer()
    }
}
