import NIOCore
import NIOEmbedded
import Testing
@testable import ChatCore

/// Write rounds under load: the next round waits as long as the last one took (at most
/// `maxWriteDelay`), so that what arrives meanwhile shares the writes.
@Suite("RoomShard write pacing")
struct RoomShardWritePacingTests {
    /// A clock the test moves by hand, with the embedded loop's time kept in step.
    private final class ManualClock {
        let loop = EmbeddedEventLoop()
        var now: UInt64 = 1_000_000

        /// Time spent inside a round (the loop does not see it until `catchUp`).
        func spend(_ nanos: UInt64) { now += nanos }

        /// Moves the loop to the clock's time (running what is due by then).
        func catchUp() { loop.advanceTime(to: .uptimeNanoseconds(now)) }

        func advance(to nanos: UInt64) {
            now = nanos
            catchUp()
        }
    }

    private func makeShard(maxWriteDelay: TimeAmount = .milliseconds(10)) -> (ManualClock, RoomShard) {
        let clock = ManualClock()
        clock.catchUp()
        let shard = RoomShard(eventLoop: clock.loop, metrics: ChatMetrics(), maxWriteDelay: maxWriteDelay,
                              clock: { .uptimeNanoseconds(clock.now) }, cpuClock: { clock.now })
        return (clock, shard)
    }

    private func say(_ text: String) -> ChatBroadcast {
        ChatBroadcast(.say(room: "r1", username: "a", text: text))
    }

    /// A member whose writes take `cost` nanoseconds of the clock.
    private func slowMember(_ clock: ManualClock, cost: UInt64) -> FakeMember {
        let member = FakeMember("slow")
        member.onDeliver = { _ in clock.spend(cost) }
        return member
    }

    @Test func theNextRoundWaitsAsLongAsTheLastOneTookAndCarriesEverythingSinceInOneWrite() {
        let (clock, shard) = makeShard()
        let member = slowMember(clock, cost: 2_000_000)
        shard.add(member, to: "r1")
        shard.deliver(say("1"))
        clock.loop.run()
        #expect(member.flushedBatches == [[sayFrame("a", "1")]])
        clock.catchUp() // the round ended at 3 ms; it took 2 ms

        shard.deliver(say("2"))
        clock.loop.run()
        shard.deliver(say("3"))
        clock.loop.run()
        #expect(member.flushCount == 1, "the round waits until 5 ms")
        clock.advance(to: 4_999_999)
        #expect(member.flushCount == 1)
        clock.advance(to: 5_000_000)
        #expect(member.flushedBatches == [[sayFrame("a", "1")], [sayFrame("a", "2"), sayFrame("a", "3")]])
    }

    @Test func aCheapRoundMakesNothingWait() {
        let (clock, shard) = makeShard()
        let member = FakeMember("fast")
        shard.add(member, to: "r1")
        for n in 1...3 {
            shard.deliver(say("\(n)"))
            clock.loop.run()
            #expect(member.flushCount == n)
        }
    }

    @Test func thePauseNeverExceedsMaxWriteDelay() {
        let (clock, shard) = makeShard(maxWriteDelay: .milliseconds(10))
        let member = slowMember(clock, cost: 50_000_000)
        shard.add(member, to: "r1")
        shard.deliver(say("1"))
        clock.loop.run()
        clock.catchUp() // the round ended at 51 ms; it took 50 ms
        member.onDeliver = nil
        shard.deliver(say("2"))
        clock.loop.run()
        clock.advance(to: 60_999_999)
        #expect(member.flushCount == 1)
        clock.advance(to: 61_000_000)
        #expect(member.flushCount == 2)
    }

    @Test func maxWriteDelayZeroWritesEveryTick() {
        let (clock, shard) = makeShard(maxWriteDelay: .zero)
        let member = slowMember(clock, cost: 2_000_000)
        shard.add(member, to: "r1")
        shard.deliver(say("1"))
        clock.loop.run()
        shard.deliver(say("2"))
        clock.loop.run()
        #expect(member.flushedBatches == [[sayFrame("a", "1")], [sayFrame("a", "2")]])
    }

    @Test func aMemberJoiningWhileARoundWaitsGetsOnlyWhatComesAfter() {
        let (clock, shard) = makeShard()
        let member = slowMember(clock, cost: 2_000_000)
        shard.add(member, to: "r1")
        shard.deliver(say("1"))
        clock.loop.run()
        clock.catchUp()
        shard.deliver(say("2"))
        clock.loop.run()
        #expect(member.flushCount == 1)
        // The join writes the waiting batch to the members it was meant for, at once.
        let late = FakeMember("late")
        shard.add(late, to: "r1")
        #expect(member.flushedFrames == [sayFrame("a", "1"), sayFrame("a", "2")])
        shard.deliver(say("3"))
        clock.advance(to: clock.now + 10_000_000)
        #expect(late.frames == [sayFrame("a", "3")])
        #expect(member.frames.last == sayFrame("a", "3"))
    }

    @Test func roomsThatFillWhileARoundWaitsAreWrittenInThatRound() {
        let (clock, shard) = makeShard()
        let slow = slowMember(clock, cost: 2_000_000)
        let other = FakeMember("other")
        shard.add(slow, to: "r1")
        shard.add(other, to: "r2")
        shard.deliver(say("1"))
        clock.loop.run()
        clock.catchUp()
        shard.deliver(say("2"))
        clock.loop.run()
        shard.deliver(ChatBroadcast(.join(room: "r2", username: "x")))
        clock.loop.run()
        #expect(other.flushCount == 0, "r2 waits for the same round")
        clock.advance(to: clock.now + 2_000_000)
        #expect(other.frames == [joinFrame("x")])
        #expect(slow.frames.count == 2)
    }
}
