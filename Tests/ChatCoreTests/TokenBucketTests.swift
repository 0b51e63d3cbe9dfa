import Testing
@testable import ChatCore

@Suite("TokenBucket")
struct TokenBucketTests {
    private let second: UInt64 = 1_000_000_000
    private let millisecond: UInt64 = 1_000_000

    /// Holds the bucket so `#expect` can call its mutating `take`.
    private final class Box {
        var bucket: TokenBucket
        init(_ bucket: TokenBucket) { self.bucket = bucket }
        func take(now: UInt64) -> Bool { bucket.take(now: now) }
        func drain(now: UInt64) -> Int {
            var taken = 0
            while bucket.take(now: now) { taken += 1 }
            return taken
        }
    }

    @Test func startsFullAtTheBurst() {
        let bucket = Box(TokenBucket(rate: 20, burst: 40, now: 0))
        #expect(bucket.drain(now: 0) == 40)
        #expect(!bucket.take(now: 0))
    }

    @Test func refillsAtTheRate() {
        let bucket = Box(TokenBucket(rate: 20, burst: 40, now: 0))
        _ = bucket.drain(now: 0)
        #expect(bucket.drain(now: 1 * second) == 20)
        #expect(bucket.drain(now: 1 * second + 500 * millisecond) == 10)
    }

    @Test func refillIsCappedAtTheBurst() {
        let bucket = Box(TokenBucket(rate: 20, burst: 40, now: 0))
        _ = bucket.drain(now: 0)
        #expect(bucket.drain(now: 3600 * second) == 40)
    }

    @Test func idleTimeBeyondTheBurstIsNotSaved() {
        let bucket = Box(TokenBucket(rate: 20, burst: 40, now: 0))
        #expect(bucket.take(now: 0))
        // Full again after 50 ms; the other 950 ms of idle time are lost.
        #expect(bucket.drain(now: 1 * second) == 40)
        #expect(bucket.drain(now: 1 * second + 50 * millisecond) == 1)
    }

    @Test func partialTokensAccumulate() {
        let bucket = Box(TokenBucket(rate: 20, burst: 40, now: 0))
        _ = bucket.drain(now: 0)
        var now: UInt64 = 0
        for _ in 0..<4 {
            now += 10 * millisecond
            #expect(!bucket.take(now: now))
        }
        now += 10 * millisecond // 5 × 10 ms = 50 ms = one token
        #expect(bucket.take(now: now))
        #expect(!bucket.take(now: now))
    }

    @Test func noRefillWhenTimeGoesBackwards() {
        let bucket = Box(TokenBucket(rate: 20, burst: 40, now: 10 * second))
        _ = bucket.drain(now: 10 * second)
        #expect(!bucket.take(now: 5 * second))
        #expect(!bucket.take(now: 0))
        // The reference point stays at 10 s: 50 ms after it gives exactly one token.
        #expect(bucket.drain(now: 10 * second + 50 * millisecond) == 1)
    }

    @Test func timeGoingBackwardsDoesNotLoseEarnedTokens() {
        let bucket = Box(TokenBucket(rate: 20, burst: 40, now: 10 * second))
        _ = bucket.drain(now: 10 * second)
        #expect(bucket.drain(now: 10 * second + 100 * millisecond) == 2)
        #expect(!bucket.take(now: 1 * second))
        #expect(bucket.drain(now: 10 * second + 150 * millisecond) == 1)
    }

    @Test func sameInstantDoesNotRefill() {
        let bucket = Box(TokenBucket(rate: 1000, burst: 1, now: 7))
        #expect(bucket.take(now: 7))
        #expect(!bucket.take(now: 7))
    }

    @Test func slowRateAndBurstOfOne() {
        let bucket = Box(TokenBucket(rate: 1, burst: 1, now: 0))
        #expect(bucket.take(now: 0))
        #expect(!bucket.take(now: 999 * millisecond))
        #expect(bucket.take(now: 1 * second))
        #expect(!bucket.take(now: 1 * second))
    }

    @Test func zeroBurstNeverGrants() {
        let bucket = Box(TokenBucket(rate: 20, burst: 0, now: 0))
        #expect(!bucket.take(now: 0))
        #expect(!bucket.take(now: 10 * second))
    }

    @Test func largeTimestampsNearUInt64MaxWork() {
        let start = UInt64.max - 10 * second
        let bucket = Box(TokenBucket(rate: 20, burst: 40, now: start))
        _ = bucket.drain(now: start)
        #expect(bucket.drain(now: start + 1 * second) == 20)
    }

    @Test func keepsRateAndBurst() {
        let bucket = TokenBucket(rate: 20, burst: 40, now: 0)
        #expect(bucket.rate == 20)
        #expect(bucket.burst == 40)
    }
}
