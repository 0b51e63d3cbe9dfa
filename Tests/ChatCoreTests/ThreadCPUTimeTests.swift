import Testing
@testable import ChatCore
#if canImport(Glibc)
import Glibc
#endif

@Suite("ThreadCPUTime")
struct ThreadCPUTimeTests {
    @Test func workAdvancesItAndSleepingBarelyDoes() {
        let start = ThreadCPUTime.nanoseconds()
        #expect(start > 0)
        var sum: UInt64 = 0
        for n in 0..<2_000_000 { sum &+= UInt64(n) &* 2_654_435_761 }
        let afterWork = ThreadCPUTime.nanoseconds()
        #expect(sum != 1) // keeps the loop
        #expect(afterWork > start)
        usleep(100_000)
        let afterSleep = ThreadCPUTime.nanoseconds()
        // 100 ms asleep costs the thread next to no CPU time (a wall clock would add 100 ms).
        #expect(afterSleep - afterWork < 50_000_000)
    }
}
