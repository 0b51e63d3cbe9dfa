import NIOConcurrencyHelpers
import NIOCore
import NIOEmbedded
import Testing
@testable import ChatCore

@Suite("RoomShard")
struct RoomShardTests {
    private func makeShard() -> (EmbeddedEventLoop, RoomShard) {
        let loop = EmbeddedEventLoop()
        // Pacing (RoomShardWritePacingTests) off: the embedded loop's time stands still while
        // real CPU time passes, so a paced round would wait forever here.
        return (loop, RoomShard(eventLoop: loop, metrics: ChatMetrics(), maxWriteDelay: .zero))
    }

    private let hello = ChatBroadcast(.say(room: "r1", username: "a", text: "hello"))

    @Test func shardFramesEachBroadcastOncePerTickForEveryMember() {
        let loop = EmbeddedEventLoop()
        let framings = NIOLockedValueBox(0)
        let shard = RoomShard(eventLoop: loop, metrics: ChatMetrics(), maxWriteDelay: .zero, transportFramer: { packet, out in
            framings.withLockedValue { $0 += 1 }
            out.writeString("WS:")
            out.writeImmutableBuffer(packet)
        })
        let a = FakeMember("a"), b = FakeMember("b")
        shard.add(a, to: "r1")
        shard.add(b, to: "r1")
        let second = ChatBroadcast(.say(room: "r1", username: "a", text: "again"))
        shard.deliver(hello)
        shard.deliver(second)
        #expect(framings.withLockedValue { $0 } == 0)
        loop.run()
        #expect(framings.withLockedValue { $0 } == 2)
        let joined = "WS:" + String(buffer: hello.engineFrame) + "WS:" + String(buffer: second.engineFrame)
        #expect(a.transportBatches == [joined])
        #expect(b.transportBatches == [joined])
    }

    // MARK: membership

    @Test func addReturnsTrueOnlyWhenMembershipChanges() {
        let (_, shard) = makeShard()
        let a = FakeMember("a"), b = FakeMember("b")
        #expect(shard.add(a, to: "r1"))
        #expect(shard.add(b, to: "r1"))
        #expect(!shard.add(b, to: "r1"))
        #expect(shard.add(b, to: "r2"))
        #expect(shard.memberCount(of: "r1") == 2)
    }

    @Test func removeReturnsTrueOnlyWhenMembershipChangesAndDropsEmptyRooms() {
        let (_, shard) = makeShard()
        let a = FakeMember("a"), b = FakeMember("b")
        shard.add(a, to: "r1")
        shard.add(b, to: "r1")
        #expect(shard.remove(a, from: "r1"))
        #expect(!shard.remove(a, from: "r1"))
        #expect(shard.roomCount == 1)
        #expect(shard.remove(b, from: "r1"))
        #expect(shard.roomCount == 0)
    }

    @Test func removeFromUnknownRoomOrOfNonMemberReturnsFalse() {
        let (_, shard) = makeShard()
        let a = FakeMember("a"), b = FakeMember("b")
        #expect(!shard.remove(a, from: "nowhere"))
        shard.add(a, to: "r1")
        #expect(!shard.remove(b, from: "r1"))
        #expect(shard.memberCount(of: "r1") == 1)
    }

    @Test func addingTheSameMemberTwiceIsIgnored() {
        let (_, shard) = makeShard()
        let a = FakeMember("a")
        shard.add(a, to: "r1")
        #expect(!shard.add(a, to: "r1"))
        #expect(shard.memberCount(of: "r1") == 1)
        #expect(shard.remove(a, from: "r1"))
        #expect(shard.roomCount == 0)
    }

    @Test func roomCountAndMemberCountFollowAddsAndRemoves() {
        let (_, shard) = makeShard()
        let a = FakeMember("a"), b = FakeMember("b"), c = FakeMember("c")
        #expect(shard.roomCount == 0)
        #expect(shard.memberCount(of: "r1") == 0)
        shard.add(a, to: "r1")
        shard.add(b, to: "r1")
        shard.add(c, to: "r2")
        #expect(shard.roomCount == 2)
        #expect(shard.memberCount(of: "r1") == 2)
        #expect(shard.memberCount(of: "r2") == 1)
        shard.remove(a, from: "r1")
        #expect(shard.memberCount(of: "r1") == 1)
        shard.remove(c, from: "r2")
        #expect(shard.roomCount == 1)
        #expect(shard.memberCount(of: "r2") == 0)
        shard.remove(b, from: "r1")
        #expect(shard.roomCount == 0)
    }

    @Test func oneMemberCanBeInSeveralRooms() {
        let (loop, shard) = makeShard()
        let a = FakeMember("a")
        shard.add(a, to: "r1")
        shard.add(a, to: "r2")
        shard.deliver(ChatBroadcast(.join(room: "r1", username: "x")))
        shard.deliver(ChatBroadcast(.join(room: "r2", username: "y")))
        loop.run()
        #expect(a.frames == [joinFrame("x"), joinFrame("y")])
        // One write per room per tick.
        #expect(a.flushCount == 2)
    }

    // MARK: delivery

    @Test func deliverWritesTheSameFrameToEveryMemberOfTheRoom() {
        let (loop, shard) = makeShard()
        let members = (0..<5).map { FakeMember("m\($0)") }
        for member in members { shard.add(member, to: "r1") }
        shard.deliver(hello)
        loop.run()
        for member in members {
            #expect(member.frames == [sayFrame("a", "hello")])
            #expect(member.flushedFrames == [sayFrame("a", "hello")])
        }
    }

    @Test func deliverLeavesOtherRoomsUntouched() {
        let (loop, shard) = makeShard()
        let inside = FakeMember("in"), outside = FakeMember("out")
        shard.add(inside, to: "r1")
        shard.add(outside, to: "r2")
        shard.deliver(hello)
        loop.run()
        #expect(inside.frames.count == 1)
        #expect(outside.frames.isEmpty)
        #expect(outside.flushCount == 0)
    }

    @Test func deliverToARoomWithoutMembersDoesNothing() {
        let (loop, shard) = makeShard()
        let a = FakeMember("a")
        shard.add(a, to: "r2")
        shard.deliver(hello)
        loop.run()
        #expect(a.frames.isEmpty)
        #expect(a.flushCount == 0)
        #expect(shard.roomCount == 1)
    }

    @Test func deliverWritesNothingBeforeTheTickEnds() {
        let (loop, shard) = makeShard()
        let a = FakeMember("a")
        shard.add(a, to: "r1")
        shard.deliver(hello)
        #expect(a.frames.isEmpty)
        loop.run()
        #expect(a.frames == [sayFrame("a", "hello")])
        #expect(a.flushCount == 1)
    }

    @Test func aMemberJoiningLaterInTheTickDoesNotGetEarlierBroadcasts() {
        let (loop, shard) = makeShard()
        let a = FakeMember("a"), late = FakeMember("late")
        shard.add(a, to: "r1")
        shard.deliver(hello)
        shard.add(late, to: "r1")
        let after = ChatBroadcast(.say(room: "r1", username: "a", text: "after"))
        shard.deliver(after)
        loop.run()
        #expect(a.frames == [sayFrame("a", "hello"), sayFrame("a", "after")])
        #expect(late.frames == [sayFrame("a", "after")])
    }

    @Test func aMemberLeavingLaterInTheTickStillGetsWhatWasSaidWhileItWasThere() {
        let (loop, shard) = makeShard()
        let a = FakeMember("a"), leaving = FakeMember("leaving")
        shard.add(a, to: "r1")
        shard.add(leaving, to: "r1")
        shard.deliver(hello)
        shard.remove(leaving, from: "r1")
        shard.deliver(ChatBroadcast(.say(room: "r1", username: "a", text: "after")))
        loop.run()
        #expect(leaving.frames == [sayFrame("a", "hello")])
        #expect(a.frames == [sayFrame("a", "hello"), sayFrame("a", "after")])
    }

    @Test func severalBroadcastsInOneTickShareOneFlushPerMember() {
        let (loop, shard) = makeShard()
        let a = FakeMember("a"), b = FakeMember("b")
        shard.add(a, to: "r1")
        shard.add(b, to: "r1")
        for n in 0..<3 {
            shard.deliver(ChatBroadcast(.say(room: "r1", username: "a", text: "\(n)")))
        }
        #expect(a.flushCount == 0)
        loop.run()
        let expected = (0..<3).map { sayFrame("a", "\($0)") }
        for member in [a, b] {
            #expect(member.flushCount == 1)
            #expect(member.flushedBatches == [expected])
        }
    }

    @Test func broadcastsInLaterTicksGetTheirOwnFlush() {
        let (loop, shard) = makeShard()
        let a = FakeMember("a")
        shard.add(a, to: "r1")
        shard.deliver(ChatBroadcast(.say(room: "r1", username: "a", text: "1")))
        loop.run()
        shard.deliver(ChatBroadcast(.say(room: "r1", username: "a", text: "2")))
        shard.deliver(ChatBroadcast(.say(room: "r1", username: "a", text: "3")))
        loop.run()
        #expect(a.flushedBatches == [[sayFrame("a", "1")], [sayFrame("a", "2"), sayFrame("a", "3")]])
    }

    @Test func runningTheLoopWithNothingDeliveredFlushesNobody() {
        let (loop, shard) = makeShard()
        let a = FakeMember("a")
        shard.add(a, to: "r1")
        loop.run()
        #expect(a.flushCount == 0)
    }

    @Test func membersOfDifferentRoomsInOneTickAreEachFlushedOnce() {
        let (loop, shard) = makeShard()
        let a = FakeMember("a"), b = FakeMember("b")
        shard.add(a, to: "r1")
        shard.add(b, to: "r2")
        shard.deliver(ChatBroadcast(.join(room: "r1", username: "x")))
        shard.deliver(ChatBroadcast(.join(room: "r2", username: "y")))
        shard.deliver(ChatBroadcast(.join(room: "r1", username: "z")))
        loop.run()
        #expect(a.flushedBatches == [[joinFrame("x"), joinFrame("z")]])
        #expect(b.flushedBatches == [[joinFrame("y")]])
    }

    @Test func aMemberRemovedBeforeTheTickEndsIsStillFlushedOnce() {
        let (loop, shard) = makeShard()
        let a = FakeMember("a")
        shard.add(a, to: "r1")
        shard.deliver(hello)
        shard.remove(a, from: "r1")
        loop.run()
        #expect(a.flushedBatches == [[sayFrame("a", "hello")]])
    }

    @Test func aMemberThatRemovesItselfDuringDeliveryDoesNotCrash() {
        let (loop, shard) = makeShard()
        let a = FakeMember("a"), b = FakeMember("b"), c = FakeMember("c")
        for member in [a, b, c] { shard.add(member, to: "r1") }
        b.onDeliver = { [unowned shard] member in shard.remove(member, from: "r1") }
        shard.deliver(hello)
        loop.run()
        for member in [a, b, c] { #expect(member.frames == [sayFrame("a", "hello")]) }
        #expect(shard.memberCount(of: "r1") == 2)
        shard.deliver(ChatBroadcast(.say(room: "r1", username: "a", text: "again")))
        loop.run()
        #expect(a.frames.count == 2)
        #expect(b.frames.count == 1)
        #expect(c.frames.count == 2)
    }

    @Test func aMemberThatRemovesAnotherDuringDeliveryDoesNotCrash() {
        let (loop, shard) = makeShard()
        let a = FakeMember("a"), b = FakeMember("b"), c = FakeMember("c"), d = FakeMember("d")
        for member in [a, b, c, d] { shard.add(member, to: "r1") }
        a.onDeliver = { [unowned shard] _ in
            shard.remove(a, from: "r1")
            shard.remove(c, from: "r1")
            shard.remove(d, from: "r1")
        }
        shard.deliver(hello)
        loop.run()
        #expect(shard.memberCount(of: "r1") == 1)
        // The next broadcast reaches only who is left.
        a.onDeliver = nil
        shard.deliver(ChatBroadcast(.say(room: "r1", username: "b", text: "next")))
        loop.run()
        #expect(b.frames.last == sayFrame("b", "next"))
        for member in [a, c, d] { #expect(!member.frames.contains(sayFrame("b", "next"))) }
    }

    @Test func theLastMemberRemovingEveryoneDuringDeliveryEmptiesTheRoom() {
        let (loop, shard) = makeShard()
        let a = FakeMember("a"), b = FakeMember("b")
        shard.add(a, to: "r1")
        shard.add(b, to: "r1")
        b.onDeliver = { [unowned shard] _ in
            shard.remove(a, from: "r1")
            shard.remove(b, from: "r1")
        }
        shard.deliver(hello)
        loop.run()
        #expect(shard.roomCount == 0)
        #expect(a.flushCount == 1)
        #expect(b.flushCount == 1)
    }

    @Test func aMemberAddedDuringDeliveryDoesNotCrash() {
        let (loop, shard) = makeShard()
        let a = FakeMember("a"), late = FakeMember("late")
        shard.add(a, to: "r1")
        a.onDeliver = { [unowned shard] _ in shard.add(late, to: "r1") }
        shard.deliver(hello)
        loop.run()
        #expect(shard.memberCount(of: "r1") == 2)
        #expect(a.frames.count == 1)
    }

    @Test func aBroadcastDeliveredDuringAFlushIsFlushedInALaterTask() {
        let (loop, shard) = makeShard()
        let a = FakeMember("a")
        shard.add(a, to: "r1")
        final class Once { var done = false }
        let once = Once()
        let flushing = FlushHookMember("hook") {
            guard !once.done else { return }
            once.done = true
            shard.deliver(ChatBroadcast(.say(room: "r1", username: "a", text: "during flush")))
        }
        shard.add(flushing, to: "r1")
        shard.deliver(hello)
        loop.run()
        #expect(a.flushedFrames == [sayFrame("a", "hello"), sayFrame("a", "during flush")])
        #expect(flushing.flushCount == 2)
    }
}

/// A member that runs a hook inside `deliver`.
private final class FlushHookMember: RoomMember {
    let name: String
    private(set) var flushCount = 0
    private let hook: () -> Void

    init(_ name: String, hook: @escaping () -> Void) {
        self.name = name
        self.hook = hook
    }

    func deliver(_ batch: RoomBatch) {
        flushCount += 1
        hook()
    }
}
