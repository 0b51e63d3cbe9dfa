/// When to restart a node that exited abnormally: 0.5 s, doubling up to 10 s, so a node
/// that cannot start (port taken, bad build) does not spin; a node that ran for 30 s
/// before failing counts as healthy again and is restarted quickly.
public struct RestartBackoff: Sendable, Equatable {
    public var initial: Duration
    public var cap: Duration
    /// A run at least this long resets the schedule.
    public var resetAfter: Duration
    /// Abnormal exits since the last reset.
    public private(set) var failures = 0

    public init(initial: Duration = .milliseconds(500), cap: Duration = .seconds(10), resetAfter: Duration = .seconds(30)) {
        self.initial = initial
        self.cap = cap
        self.resetAfter = resetAfter
    }

    /// The delay before restarting a child that failed after running for `ranFor`.
    public mutating func nextDelay(ranFor: Duration) -> Duration {
        if ranFor >= resetAfter { failures = 0 }
        var delay = initial
        // Stop doubling once the cap is reached; the count itself may grow without bound.
        for _ in 0..<failures where delay < cap { delay = delay * 2 }
        failures += 1
        return min(delay, cap)
    }
}
