/// A token bucket: `rate` tokens per second, holding at most `burst`. Time comes from the
/// caller (monotonic nanoseconds), so tests control it.
public struct TokenBucket: Sendable {
    public let rate: Int
    public let burst: Int
    private var tokens: Double
    private var lastRefill: UInt64

    public init(rate: Int, burst: Int, now: UInt64) {
        self.rate = rate
        self.burst = burst
        self.tokens = Double(burst)
        self.lastRefill = now
    }

    /// Takes one token if there is one.
    public mutating func take(now: UInt64) -> Bool {
        if now > lastRefill {
            let elapsed = Double(now - lastRefill) / 1_000_000_000
            tokens = min(Double(burst), tokens + elapsed * Double(rate))
            lastRefill = now
        }
        guard tokens >= 1 else { return false }
        tokens -= 1
        return true
    }
}
