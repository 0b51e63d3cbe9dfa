import NIOConcurrencyHelpers
import NIOCore
import NIOEmbedded
import Testing
@testable import ChatCore

/// Draining waits for conditions (sessions gone, PUBs acknowledged) by checking them on a loop
/// now and then, without blocking a thread: done as soon as one holds, or at the deadline.
@Suite("ScheduledCheck") struct ScheduledCheckTests {
    /// The future's value, once it has one.
    final class Outcome: @unchecked Sendable { // read and written on the test's embedded loop only
        var value: Bool?
    }

    func watch(_ future: EventLoopFuture<Bool>) -> Outcome {
        let outcome = Outcome()
        future.whenSuccess { outcome.value = $0 }
        return outcome
    }

    @Test func aConditionThatAlreadyHoldsCompletesAtOnceWithTrue() {
        let loop = EmbeddedEventLoop()
        let outcome = watch(ScheduledCheck.until(loop.now + .seconds(1), every: .milliseconds(20), on: loop) { true })
        loop.run()
        #expect(outcome.value == true)
    }

    @Test func completesWithTrueAtTheFirstCheckAfterTheConditionHolds() {
        let loop = EmbeddedEventLoop()
        let done = NIOLockedValueBox(false)
        let checks = NIOLockedValueBox(0)
        let outcome = watch(ScheduledCheck.until(loop.now + .seconds(1), every: .milliseconds(20), on: loop) {
            checks.withLockedValue { $0 += 1 }
            return done.withLockedValue { $0 }
        })
        loop.run()
        loop.advanceTime(by: .milliseconds(40))
        #expect(checks.withLockedValue { $0 } == 3)
        #expect(outcome.value == nil)
        done.withLockedValue { $0 = true }
        loop.advanceTime(by: .milliseconds(19))
        #expect(outcome.value == nil)
        loop.advanceTime(by: .milliseconds(1))
        #expect(outcome.value == true)
        #expect(checks.withLockedValue { $0 } == 4)
    }

    @Test func completesWithFalseAtTheDeadlineWhenTheConditionNeverHolds() {
        let loop = EmbeddedEventLoop()
        let outcome = watch(ScheduledCheck.until(loop.now + .milliseconds(50), every: .milliseconds(20), on: loop) { false })
        loop.run()
        loop.advanceTime(by: .milliseconds(49))
        #expect(outcome.value == nil)
        loop.advanceTime(by: .milliseconds(1))
        #expect(outcome.value == false)
    }

    @Test func aDeadlineAlreadyPastStillChecksOnce() {
        let loop = EmbeddedEventLoop()
        loop.advanceTime(by: .seconds(1))
        let met = watch(ScheduledCheck.until(loop.now - .milliseconds(1), every: .milliseconds(20), on: loop) { true })
        let unmet = watch(ScheduledCheck.until(loop.now - .milliseconds(1), every: .milliseconds(20), on: loop) { false })
        loop.run()
        #expect(met.value == true)
        #expect(unmet.value == false)
    }
}
