import ChatCore
import Testing

/// `ReconnectBackoff` (ChatCore) as the mesh uses it to redial peers.
@Suite struct ReconnectBackoffTests {
    static let nominals = [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]

    @Test func delaysLieBetweenHalfAndAllOfTheNominalDelay() {
        for seed in UInt64(1)...200 {
            var generator = SplitMix64(seed: seed)
            var backoff = ReconnectBackoff(capMs: 5000)
            for nominal in Self.nominals {
                let delay = backoff.nextDelayMs(using: &generator)
                #expect((nominal / 2...nominal).contains(delay), "seed \(seed): \(delay) for nominal \(nominal)")
            }
            #expect(backoff.attempts == Self.nominals.count)
        }
    }

    @Test func nominalDelayDoublesFrom100msAndStopsAtTheCap() {
        // A generator that always draws the top of the range shows the nominal values themselves.
        var top = MaxGenerator()
        var backoff = ReconnectBackoff(capMs: 5000)
        #expect(Self.nominals.map { _ in backoff.nextDelayMs(using: &top) } == Self.nominals)
    }

    @Test func manyAttemptsStayAtTheCapWithoutOverflow() {
        var generator = SplitMix64(seed: 3)
        var backoff = ReconnectBackoff(capMs: 60_000)
        for _ in 0..<200 {
            let delay = backoff.nextDelayMs(using: &generator)
            #expect(delay >= 50 && delay <= 60_000)
        }
        #expect((30_000...60_000).contains(backoff.nextDelayMs(using: &generator)))
    }

    @Test func sameSeedGivesTheSameDelays() {
        func delays(_ seed: UInt64) -> [Int] {
            var generator = SplitMix64(seed: seed)
            var backoff = ReconnectBackoff(capMs: 5000)
            return (0..<10).map { _ in backoff.nextDelayMs(using: &generator) }
        }
        #expect(delays(42) == delays(42))
        #expect(delays(42) != delays(43))
    }

    @Test func firstDelaysSpreadOverTheWholeJitterRange() {
        var generator = SplitMix64(seed: 9)
        let first = (0..<2000).map { _ in
            var backoff = ReconnectBackoff(capMs: 5000)
            return backoff.nextDelayMs(using: &generator)
        }
        #expect(first.min() == 50)
        #expect(first.max() == 100)
        #expect(Set(first).count == 51)
    }

    @Test func resetStartsOverAt100ms() {
        var top = MaxGenerator()
        var backoff = ReconnectBackoff(capMs: 5000)
        for _ in 0..<5 { _ = backoff.nextDelayMs(using: &top) }
        backoff.reset()
        #expect(backoff.attempts == 0)
        #expect(backoff.nextDelayMs(using: &top) == 100)
        #expect(backoff.nextDelayMs(using: &top) == 200)
    }

    @Test func capBelowTheBaseIsRaisedToTheBase() {
        var top = MaxGenerator()
        var backoff = ReconnectBackoff(capMs: 10)
        #expect(backoff.capMs == 100)
        #expect(backoff.nextDelayMs(using: &top) == 100)
        #expect(backoff.nextDelayMs(using: &top) == 100)
    }

    @Test func systemRandomDelaysStayInRange() {
        var backoff = ReconnectBackoff(capMs: 1000)
        for nominal in [100, 200, 400, 800, 1000, 1000] {
            #expect((nominal / 2...nominal).contains(backoff.nextDelayMs()))
        }
    }
}

/// Always draws the largest value: `random(in:)` then yields the top of the range.
struct MaxGenerator: RandomNumberGenerator {
    mutating func next() -> UInt64 { .max }
}
