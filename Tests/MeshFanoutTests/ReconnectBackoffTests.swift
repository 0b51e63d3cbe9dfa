import ChatCore
import NIOCore
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

    // MARK: A link must stay up a while before the backoff starts over

    @Test func aLinkDownBeforeItWasStableKeepsTheAttempts() {
        var top = MaxGenerator()
        var backoff = ReconnectBackoff(capMs: 5000)
        #expect(backoff.nextDelayMs(using: &top) == 100)
        #expect(backoff.nextDelayMs(using: &top) == 200)
        let up = NIODeadline.uptimeNanoseconds(1_000_000_000)
        backoff.linkUp(at: up)
        #expect(backoff.upSince == up)
        backoff.linkDown(at: up + .milliseconds(9_999))
        #expect(backoff.upSince == nil)
        #expect(backoff.attempts == 2)
        #expect(backoff.nextDelayMs(using: &top) == 400)
    }

    @Test func aLinkUpForStableAfterStartsOver() {
        var top = MaxGenerator()
        var backoff = ReconnectBackoff(capMs: 5000)
        for _ in 0..<4 { _ = backoff.nextDelayMs(using: &top) }
        let up = NIODeadline.uptimeNanoseconds(5_000_000_000)
        backoff.linkUp(at: up)
        backoff.linkDown(at: up + ReconnectBackoff.defaultStableAfter)
        #expect(backoff.attempts == 0)
        #expect(backoff.nextDelayMs(using: &top) == 100)
    }

    @Test func stableAfterIsTheBackoffsOwn() {
        var backoff = ReconnectBackoff(capMs: 5000, stableAfter: .seconds(2))
        _ = backoff.nextDelayMs()
        let up = NIODeadline.uptimeNanoseconds(0)
        backoff.linkUp(at: up)
        backoff.linkDown(at: up + .seconds(2))
        #expect(backoff.attempts == 0)
    }

    @Test func aDownWithoutAnUpChangesNothing() {
        var backoff = ReconnectBackoff(capMs: 5000)
        for _ in 0..<3 { _ = backoff.nextDelayMs() }
        backoff.linkDown(at: .uptimeNanoseconds(100_000_000_000))
        #expect(backoff.attempts == 3)
    }

    // MARK: The first dial

    @Test func firstDialDelaysFillAWindowOfTenMillisecondsPerPeerUpToOneSecond() {
        for (peers, window) in [(1, 10), (9, 90), (49, 490), (99, 990), (100, 1000), (999, 1000)] {
            var generator = SplitMix64(seed: UInt64(peers))
            let delays = (0..<3000).map { _ in ReconnectBackoff.firstDialDelayMs(peers: peers, using: &generator) }
            #expect(delays.allSatisfy { (0...window).contains($0) }, "\(peers) peers")
            // Both ends of the window are reached (within 5 % of it).
            #expect(delays.min()! <= window / 20, "\(peers) peers: \(delays.min()!)")
            #expect(delays.max()! >= window - window / 20, "\(peers) peers: \(delays.max()!)")
            // Uniform: about half below the middle.
            let low = delays.filter { $0 < window / 2 }.count
            #expect((1200...1800).contains(low), "\(peers) peers: \(low) of 3000 below \(window / 2)")
        }
    }

    @Test func noPeersNoWait() {
        var generator = SplitMix64(seed: 1)
        #expect(ReconnectBackoff.firstDialDelayMs(peers: 0, using: &generator) == 0)
        #expect(ReconnectBackoff.firstDialDelayMs(peers: 5, perPeerMs: 0, using: &generator) == 0)
    }
}

/// Always draws the largest value: `random(in:)` then yields the top of the range.
struct MaxGenerator: RandomNumberGenerator {
    mutating func next() -> UInt64 { .max }
}
