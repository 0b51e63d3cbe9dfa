import NIOCore

/// Exponential backoff with jitter for reconnecting a fanout link (mesh peers, Redis): 100 ms doubling up to a cap, each delay
/// drawn from [½, 1] of the nominal value so that nodes restarting together do not dial in step.
public struct ReconnectBackoff: Sendable {
    public let baseMs: Int
    public let capMs: Int
    public private(set) var attempts = 0

    public init(baseMs: Int = 100, capMs: Int) {
        self.baseMs = baseMs
        self.capMs = max(baseMs, capMs)
    }

    /// `base` and `cap` count in whole milliseconds, the granularity of the jitter.
    public init(base: TimeAmount = .milliseconds(100), cap: TimeAmount) {
        self.init(baseMs: Int(base.nanoseconds / 1_000_000), capMs: Int(cap.nanoseconds / 1_000_000))
    }

    public mutating func nextDelay() -> TimeAmount {
        .milliseconds(Int64(nextDelayMs()))
    }

    public mutating func nextDelayMs<R: RandomNumberGenerator>(using generator: inout R) -> Int {
        let nominal = min(capMs, baseMs << min(attempts, 20))
        attempts += 1
        return Int.random(in: (nominal / 2)...nominal, using: &generator)
    }

    public mutating func nextDelayMs() -> Int {
        var generator = SystemRandomNumberGenerator()
        return nextDelayMs(using: &generator)
    }

    public mutating func reset() {
        attempts = 0
    }
}
