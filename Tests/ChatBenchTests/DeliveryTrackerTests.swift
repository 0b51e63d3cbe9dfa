import Testing
@testable import ChatBench

@Suite struct DeliveryTrackerTests {
    @Test func inOrderIsCountedOnce() {
        var t = DeliveryTracker()
        for s in 0..<100 as Range<UInt64> { #expect(t.record(s) == .inOrder) }
        #expect(t.received == 100)
        #expect(t.duplicated == 0)
        #expect(t.reordered == 0)
        #expect(t.lost(expected: 100) == 0)
        #expect(t.lost(expected: 103) == 3)
    }

    @Test func dropsAreLost() {
        var t = DeliveryTracker()
        for s in [0, 1, 3, 4, 7, 9] as [UInt64] { t.record(s) }
        #expect(t.received == 6)
        #expect(t.lost(expected: 10) == 4)  // 2, 5, 6, 8
        #expect(t.missingBelowHighest == 4)
        #expect(t.reordered == 0)
        #expect(t.duplicated == 0)
    }

    @Test func lossAtTheStartAndTheEnd() {
        var t = DeliveryTracker()
        for s in [2, 3, 4] as [UInt64] { t.record(s) }
        #expect(t.lost(expected: 7) == 4)  // 0, 1, 5, 6
    }

    @Test func duplicatesAreCaught() {
        var t = DeliveryTracker()
        #expect(t.record(0) == .inOrder)
        #expect(t.record(0) == .duplicate)
        #expect(t.record(1) == .inOrder)
        #expect(t.record(3) == .inOrder)
        #expect(t.record(1) == .duplicate)
        #expect(t.record(3) == .duplicate)
        #expect(t.received == 3)
        #expect(t.duplicated == 3)
        #expect(t.reordered == 0)
        #expect(t.lost(expected: 4) == 1)
    }

    @Test func lateArrivalsAreReorderedNotLost() {
        var t = DeliveryTracker()
        for s in [0, 2, 1, 3, 6, 5, 4, 7] as [UInt64] { t.record(s) }
        #expect(t.received == 8)
        #expect(t.reordered == 3)  // 1, 5, 4
        #expect(t.duplicated == 0)
        #expect(t.lost(expected: 8) == 0)
        #expect(t.missingBelowHighest == 0)
    }

    @Test func aLateCopyOfALateArrivalIsADuplicate() {
        var t = DeliveryTracker()
        for s in [0, 5, 3] as [UInt64] { t.record(s) }
        #expect(t.record(3) == .duplicate)
        #expect(t.record(4) == .reordered)
        #expect(t.record(1) == .reordered)
        #expect(t.record(2) == .reordered)
        #expect(t.record(2) == .duplicate)
        #expect(t.missingBelowHighest == 0)
        #expect(t.received == 6)
        #expect(t.duplicated == 2)
        #expect(t.reordered == 4)
    }

    @Test func hugeGapsCostOneEntry() {
        var t = DeliveryTracker()
        t.record(0)
        t.record(10_000_000)
        #expect(t.missingBelowHighest == 9_999_999)
        #expect(t.record(5_000_000) == .reordered)
        #expect(t.missingBelowHighest == 9_999_998)
        #expect(t.lost(expected: 10_000_001) == 9_999_998)
    }

    /// Drop, duplicate and swap deterministically and compare with the tracker's counts.
    @Test func mixedFaultsMatchWhatWasInjected() {
        var t = DeliveryTracker()
        var arrivals: [UInt64] = []
        var dropped = 0, duplicated = 0, swapped = 0
        var s: UInt64 = 0
        while s < 1000 {
            switch s % 10 {
            case 2: dropped += 1; s += 1
            case 4: arrivals += [s, s]; duplicated += 1; s += 1
            case 6: arrivals += [s + 1, s]; swapped += 1; s += 2
            default: arrivals.append(s); s += 1
            }
        }
        for a in arrivals { t.record(a) }
        #expect(t.lost(expected: 1000) == UInt64(dropped))
        #expect(t.duplicated == UInt64(duplicated))
        #expect(t.reordered == UInt64(swapped))
    }
}
