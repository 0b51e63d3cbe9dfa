import NIOCore
import NIOEmbedded
import Testing
@testable import ChatCore

/// A fanout's drain waits for an event (the last ACK, the last reply), not for a poll: it
/// completes the moment the adapter settles it, or at its own deadline.
@Suite("DrainWaiters") struct DrainWaitersTests {
    /// The future's value, once it has one.
    final class Outcome: @unchecked Sendable { // read and written on the test's embedded loop only
        var value: Bool?
    }

    func watch(_ future: EventLoopFuture<Bool>) -> Outcome {
        let outcome = Outcome()
        future.whenSuccess { outcome.value = $0 }
        return outcome
    }

    @Test func settleCompletesEveryWaitingDrainWithTrueWithoutTheClockMoving() {
        let loop = EmbeddedEventLoop()
        let waiters = DrainWaiters(eventLoop: loop)
        let first = watch(waiters.wait(until: loop.now + .seconds(5)))
        let second = watch(waiters.wait(until: loop.now + .seconds(1)))
        loop.run()
        #expect(first.value == nil && second.value == nil)
        #expect(!waiters.isEmpty)

        waiters.settle()
        #expect(first.value == true)
        #expect(second.value == true)
        #expect(waiters.isEmpty)
    }

    @Test func aDrainNotSettledCompletesWithFalseAtItsDeadline() {
        let loop = EmbeddedEventLoop()
        let waiters = DrainWaiters(eventLoop: loop)
        let outcome = watch(waiters.wait(until: loop.now + .milliseconds(300)))
        loop.advanceTime(by: .milliseconds(299))
        #expect(outcome.value == nil)
        loop.advanceTime(by: .milliseconds(1))
        #expect(outcome.value == false)
        #expect(waiters.isEmpty)
    }

    @Test func eachDrainKeepsItsOwnDeadline() {
        let loop = EmbeddedEventLoop()
        let waiters = DrainWaiters(eventLoop: loop)
        let short = watch(waiters.wait(until: loop.now + .milliseconds(100)))
        let long = watch(waiters.wait(until: loop.now + .seconds(5)))
        loop.advanceTime(by: .milliseconds(100))
        #expect(short.value == false)
        #expect(long.value == nil)
        waiters.settle()
        #expect(long.value == true)
        #expect(short.value == false)
    }

    @Test func aSettledDrainStaysTrueWhenItsDeadlinePasses() {
        let loop = EmbeddedEventLoop()
        let waiters = DrainWaiters(eventLoop: loop)
        let outcome = watch(waiters.wait(until: loop.now + .milliseconds(50)))
        waiters.settle()
        loop.advanceTime(by: .seconds(1))
        #expect(outcome.value == true)
    }

    @Test func settleWithNobodyWaitingDoesNothing() {
        let loop = EmbeddedEventLoop()
        let waiters = DrainWaiters(eventLoop: loop)
        waiters.settle()
        #expect(waiters.isEmpty)
        let outcome = watch(waiters.wait(until: loop.now + .milliseconds(50)))
        loop.advanceTime(by: .milliseconds(50))
        #expect(outcome.value == false)
    }
}
