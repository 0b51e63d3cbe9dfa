/// A token bucket: `rate` tokens per second, holding at most `burst`. Time comes from the
/// caller (monotonic nanoseconds), so tests control it.
public struct TokenBucket: Sendable {
    public private(set) var rate: Int
    public private(set) var burst: Int
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
        refill(now: now)
        guard tokens >= 1 else { return false }
        tokens -= 1
        return true
    }

    /// Takes a new rate and burst (a reload). What was earned at the old rate until `now` is
    /// kept, capped to the new burst: a client is neither handed a fresh full bucket nor
    /// robbed of the tokens it had, and a smaller burst holds from the next take.
    public mutating func retune(rate: Int, burst: Int, now: UInt64) {
        refill(now: now)
        self.rate = rate
        self.burst = burst
        tokens = min(tokens, Double(burst))
    }

    private mutating func refill(now: UInt64) {
        guard now > lastRefill else { return }
        let elapsed = Double(now - lastRefill) / 1_000_000_000
        tokens = min(Double(burst), tokens + elapsed * Double(rate))
        lastRefill = now
    }
}
