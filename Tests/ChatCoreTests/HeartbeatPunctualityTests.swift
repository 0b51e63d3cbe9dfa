import NIOCore
import Testing
@testable import ChatCore

@Suite("HeartbeatPunctuality")
struct HeartbeatPunctualityTests {
    /// Beats at the given milliseconds; whether each was on time.
    private func beats(_ milliseconds: [Int64], interval: TimeAmount) -> [Bool] {
        var punctuality = HeartbeatPunctuality(interval: interval)
        return milliseconds.map { punctuality.beat(at: .uptimeNanoseconds(UInt64(10_000_000_000 + $0 * 1_000_000))) }
    }

    @Test func beatsAboutOneIntervalApartAreOnTime() {
        #expect(beats([0, 1_003, 2_400], interval: .seconds(1)) == [true, true, true])
    }

    @Test func aBeatAfterTheLoopWasBusyIsLateAndTheNextIsOnTimeAgain() {
        // A 3.5 s tick held the loop between the first two beats.
        #expect(beats([0, 3_500, 4_501], interval: .seconds(1)) == [true, false, true])
    }

    @Test func halfAnIntervalLateIsTheLimit() {
        #expect(beats([0, 3_000, 6_001], interval: .seconds(2)) == [true, true, false])
    }
}
