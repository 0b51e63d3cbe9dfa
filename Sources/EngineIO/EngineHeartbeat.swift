/// The v4 heartbeat of one session as deadlines on the server's monotonic clock (nanoseconds),
/// without timers: the server asks `step(now:)` when a deadline may have passed, from its
/// timer or whenever the client is heard from.
///
/// The timing is the reference server's: the first ping is due `pingInterval` after the open,
/// the pong `pingTimeout` after the ping, and a pong restarts the interval from its arrival.
/// So a client that stops answering is gone `pingInterval + pingTimeout` after its last pong
/// (or the open), however late the server's timer fires; `step(now:)` at every request makes
/// that exact, because a request after the deadline finds the session closed.
public struct EngineHeartbeat: Equatable, Sendable {
    public let pingInterval: UInt64
    public let pingTimeout: UInt64
    /// When the next ping is due, or, while `awaitingPong`, when the pong is.
    public private(set) var deadline: UInt64
    public private(set) var awaitingPong = false

    public enum Step: Equatable, Sendable {
        /// Nothing is due before `until`.
        case wait(until: UInt64)
        /// Send a ping now; its pong is owed by `pongDue`.
        case sendPing(pongDue: UInt64)
        /// The pong owed was not received in time.
        case timedOut
    }

    public init(pingIntervalMs: Int, pingTimeoutMs: Int, openedAt now: UInt64) {
        pingInterval = UInt64(max(pingIntervalMs, 0)) * 1_000_000
        pingTimeout = UInt64(max(pingTimeoutMs, 0)) * 1_000_000
        deadline = now + pingInterval
    }

    public mutating func step(now: UInt64) -> Step {
        guard now >= deadline else { return .wait(until: deadline) }
        if awaitingPong { return .timedOut }
        awaitingPong = true
        // Counted from when the ping was due, not from when a coarse timer got round to it, so
        // the session ends at interval + timeout as the reference's does. A ping sent very late
        // (the loop was stalled) still leaves the client half the timeout: our stall is not its fault.
        deadline = max(deadline + pingTimeout, now + pingTimeout / 2)
        return .sendPing(pongDue: deadline)
    }

    /// A pong arrived. Returns the next ping's deadline if one was owed, nil if not (ignored).
    public mutating func pongReceived(now: UInt64) -> UInt64? {
        guard awaitingPong else { return nil }
        awaitingPong = false
        deadline = now + pingInterval
        return deadline
    }
}
