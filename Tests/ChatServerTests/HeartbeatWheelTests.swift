import NIOCore
import NIOEmbedded
import Testing

@testable import ChatServer

/// Deadlines on the per-loop wheel fire once, never early, at most a tick late, and only for the
/// generation they were scheduled under.
struct HeartbeatWheelTests {
    final class Recorder: HeartbeatWheel.Target {
        var fired: [(generation: UInt32, at: NIODeadline)] = []
        let loop: EmbeddedEventLoop
        init(loop: EmbeddedEventLoop) { self.loop = loop }
        func heartbeatDeadlinePassed(generation: UInt32) { fired.append((generation, loop.now)) }
    }

    @Test func aDeadlineFiresOnceNotEarlyAndWithinOneTick() {
        let loop = EmbeddedEventLoop()
        let wheel = HeartbeatWheel(eventLoop: loop, shortestDelay: .seconds(1), longestDelay: .seconds(2))
        let target = Recorder(loop: loop)
        let start = loop.now
        wheel.schedule(target, generation: 7, after: .milliseconds(1_000))
        loop.advanceTime(by: .milliseconds(990))
        #expect(target.fired.isEmpty)
        loop.advanceTime(by: .seconds(5))
        #expect(target.fired.map(\.generation) == [7])
        let late = target.fired[0].at - (start + .seconds(1))
        #expect(late >= .zero && late <= wheel.tick * 2, "fired \(late) after the deadline")
        #expect(wheel.pendingEntries == 0)
    }

    /// The wheel wakes on tick boundaries: a deadline scheduled mid-tick is not pushed back by
    /// a ticker that started mid-tick too.
    @Test func aDeadlineScheduledMidTickFiresLessThanATickLate() {
        let loop = EmbeddedEventLoop()
        let wheel = HeartbeatWheel(eventLoop: loop, shortestDelay: .milliseconds(100), longestDelay: .milliseconds(200))
        loop.advanceTime(by: .milliseconds(37))
        let target = Recorder(loop: loop)
        let deadline = loop.now + .milliseconds(100)
        wheel.schedule(target, generation: 1, at: deadline)
        loop.advanceTime(by: .milliseconds(99))
        #expect(target.fired.isEmpty)
        loop.advanceTime(by: .milliseconds(50))
        #expect(target.fired.count == 1)
        let late = target.fired[0].at - deadline
        #expect(late >= .zero && late < wheel.tick, "fired \(late) after the deadline, tick \(wheel.tick)")
    }

    @Test func aDeadlineAlreadyPassedFiresOnTheNextTick() {
        let loop = EmbeddedEventLoop()
        let wheel = HeartbeatWheel(eventLoop: loop, shortestDelay: .milliseconds(100), longestDelay: .milliseconds(200))
        loop.advanceTime(by: .milliseconds(55))
        let target = Recorder(loop: loop)
        wheel.schedule(target, generation: 3, at: loop.now - .milliseconds(20))
        loop.advanceTime(by: .milliseconds(10))
        #expect(target.fired.map(\.generation) == [3])
    }

    @Test func deadlinesFireInOrderAcrossManyTargets() {
        let loop = EmbeddedEventLoop()
        let wheel = HeartbeatWheel(eventLoop: loop, shortestDelay: .milliseconds(500), longestDelay: .seconds(3))
        let targets = (0..<50).map { _ in Recorder(loop: loop) }
        for (index, target) in targets.enumerated() {
            wheel.schedule(target, generation: UInt32(index), after: .milliseconds(Int64(50 * index + 10)))
        }
        loop.advanceTime(by: .seconds(4))
        for (index, target) in targets.enumerated() {
            #expect(target.fired.map(\.generation) == [UInt32(index)])
        }
        let times = targets.map { $0.fired[0].at }
        #expect(times == times.sorted())
    }

    @Test func aDelayLongerThanTheWheelStillFiresNotEarly() {
        let loop = EmbeddedEventLoop()
        let wheel = HeartbeatWheel(eventLoop: loop, shortestDelay: .milliseconds(100), longestDelay: .milliseconds(200))
        let target = Recorder(loop: loop)
        let start = loop.now
        wheel.schedule(target, generation: 1, after: .seconds(3))
        loop.advanceTime(by: .milliseconds(2_900))
        #expect(target.fired.isEmpty)
        loop.advanceTime(by: .seconds(1))
        #expect(target.fired.count == 1)
        #expect(target.fired[0].at >= start + .seconds(3))
    }

    @Test func aTargetScheduledFromItsOwnCallbackFiresAgain() {
        final class Repeater: HeartbeatWheel.Target {
            var count = 0
            var wheel: HeartbeatWheel?
            func heartbeatDeadlinePassed(generation: UInt32) {
                count += 1
                if count < 3 { wheel?.schedule(self, generation: generation + 1, after: .milliseconds(100)) }
            }
        }
        let loop = EmbeddedEventLoop()
        let wheel = HeartbeatWheel(eventLoop: loop, shortestDelay: .milliseconds(100), longestDelay: .milliseconds(100))
        let repeater = Repeater()
        repeater.wheel = wheel
        wheel.schedule(repeater, generation: 0, after: .milliseconds(100))
        loop.advanceTime(by: .seconds(2))
        #expect(repeater.count == 3)
        #expect(wheel.pendingEntries == 0)
    }
}
