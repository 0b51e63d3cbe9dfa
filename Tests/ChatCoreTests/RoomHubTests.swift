import NIOCore
import NIOEmbedded
import Testing
@testable import ChatCore

@Suite("RoomHub")
struct RoomHubTests {
    @Test func hubStartsItsFanoutWithItselfAsDelivery() {
        let node = Node(loops: 2, echo: false)
        #expect(node.fanout.startCount == 1)
        #expect(node.fanout.delivery === node.hub)
    }

    @Test func hubHasOneShardPerEventLoop() {
        let node = Node(loops: 2, echo: false)
        #expect(node.hub.shards.count == 2)
        #expect(node.hub.shard(for: node.loops[0]) === node.hub.shards[0])
        #expect(node.hub.shard(for: node.loops[1]) === node.hub.shards[1])
        #expect(node.hub.shards[0].eventLoop === node.loops[0])
        #expect(node.hub.shards[1].eventLoop === node.loops[1])
    }

    @Test func subscribeOnFirstMemberNodeWideAndUnsubscribeOnLastAcrossShards() {
        let node = Node(loops: 2, echo: false)
        let (s0, s1) = (node.hub.shards[0], node.hub.shards[1])
        let a = FakeMember("a"), b = FakeMember("b"), c = FakeMember("c")

        node.hub.join(a, room: "r1", shard: s0)
        #expect(node.fanout.calls == [.subscribe("r1")])
        node.hub.join(b, room: "r1", shard: s1) // first on shard 1, but not node-wide
        node.hub.join(c, room: "r1", shard: s0)
        #expect(node.fanout.calls == [.subscribe("r1")])

        node.hub.leave(a, room: "r1", shard: s0)
        node.hub.leave(c, room: "r1", shard: s0) // shard 0 empties, shard 1 still has b
        #expect(node.fanout.calls == [.subscribe("r1")])
        #expect(s0.memberCount(of: "r1") == 0)
        #expect(s1.memberCount(of: "r1") == 1)

        node.hub.leave(b, room: "r1", shard: s1)
        #expect(node.fanout.calls == [.subscribe("r1"), .unsubscribe("r1")])
    }

    @Test func joiningTwiceAndLeavingOnceLeavesTheRoomEmpty() {
        let node = Node(loops: 1, echo: false)
        let shard = node.hub.shards[0]
        let a = FakeMember("a")
        node.hub.join(a, room: "r1", shard: shard)
        node.hub.join(a, room: "r1", shard: shard)
        node.hub.leave(a, room: "r1", shard: shard)
        #expect(node.fanout.calls == [.subscribe("r1"), .unsubscribe("r1")])
        #expect(node.hub.roomCount == 0)
        node.hub.leave(a, room: "r1", shard: shard) // a second leave changes nothing
        #expect(node.fanout.calls == [.subscribe("r1"), .unsubscribe("r1")])
    }

    @Test func roomIsSubscribedAgainAfterItEmptied() {
        let node = Node(loops: 2, echo: false)
        let a = FakeMember("a"), b = FakeMember("b")
        node.hub.join(a, room: "r1", shard: node.hub.shards[0])
        node.hub.leave(a, room: "r1", shard: node.hub.shards[0])
        node.hub.join(b, room: "r1", shard: node.hub.shards[1])
        #expect(node.fanout.calls == [.subscribe("r1"), .unsubscribe("r1"), .subscribe("r1")])
    }

    @Test func roomsAreSubscribedIndependently() {
        let node = Node(loops: 2, echo: false)
        let a = FakeMember("a"), b = FakeMember("b")
        node.hub.join(a, room: "r1", shard: node.hub.shards[0])
        node.hub.join(b, room: "r2", shard: node.hub.shards[1])
        node.hub.leave(a, room: "r1", shard: node.hub.shards[0])
        #expect(node.fanout.calls == [.subscribe("r1"), .subscribe("r2"), .unsubscribe("r1")])
    }

    @Test func leavingARoomWithNoLocalMembersDoesNotUnsubscribe() {
        let node = Node(loops: 1, echo: false)
        node.hub.leave(FakeMember("ghost"), room: "r1", shard: node.shard)
        #expect(node.fanout.calls.isEmpty)
        #expect(node.hub.roomCount == 0)
    }

    @Test func roomCountAndLocalRoomsCountRoomsNodeWide() {
        let node = Node(loops: 2, echo: false)
        let (s0, s1) = (node.hub.shards[0], node.hub.shards[1])
        let a = FakeMember("a"), b = FakeMember("b"), c = FakeMember("c")
        #expect(node.hub.roomCount == 0)
        node.hub.join(a, room: "r1", shard: s0)
        node.hub.join(b, room: "r1", shard: s1)
        node.hub.join(c, room: "r2", shard: s1)
        #expect(node.hub.roomCount == 2)
        #expect(Set(node.hub.localRooms) == ["r1", "r2"])
        node.hub.leave(b, room: "r1", shard: s1)
        #expect(node.hub.roomCount == 2)
        node.hub.leave(a, room: "r1", shard: s0)
        #expect(node.hub.roomCount == 1)
        #expect(node.hub.localRooms == ["r2"])
        node.hub.leave(c, room: "r2", shard: s1)
        #expect(node.hub.roomCount == 0)
        #expect(node.hub.localRooms.isEmpty)
    }

    @Test func joinAddsTheMemberToTheGivenShardOnly() {
        let node = Node(loops: 2, echo: false)
        node.hub.join(FakeMember("a"), room: "r1", shard: node.hub.shards[1])
        #expect(node.hub.shards[0].memberCount(of: "r1") == 0)
        #expect(node.hub.shards[1].memberCount(of: "r1") == 1)
    }

    @Test func publishGoesToTheFanoutOnly() {
        let node = Node(loops: 1, echo: false)
        let a = FakeMember("a")
        node.hub.join(a, room: "r1", shard: node.shard)
        node.fanout.reset()
        node.hub.publish(.say(room: "r1", username: "a", text: "hi"))
        node.runAll()
        #expect(node.fanout.calls == [.publish(room: "r1", json: #"{"event":"broadcast_say","data":{"username":"a","text":"hi"}}"#)])
        #expect(a.frames.isEmpty) // members hear it only when the fanout delivers it
    }

    @Test func deliverLocallyReachesMembersOnEveryShard() {
        let node = Node(loops: 2, echo: false)
        let a = FakeMember("a"), b = FakeMember("b"), other = FakeMember("other")
        node.hub.join(a, room: "r1", shard: node.hub.shards[0])
        node.hub.join(b, room: "r1", shard: node.hub.shards[1])
        node.hub.join(other, room: "r2", shard: node.hub.shards[1])
        node.hub.deliverLocally(ChatBroadcast(.say(room: "r1", username: "a", text: "hi")))
        node.runAll()
        #expect(a.flushedBatches == [[sayFrame("a", "hi")]])
        #expect(b.flushedBatches == [[sayFrame("a", "hi")]])
        #expect(other.frames.isEmpty)
    }

    @Test func deliverLocallyFromTheFanoutKeepsOrderOnEveryShard() {
        let node = Node(loops: 2, echo: true)
        let a = FakeMember("a"), b = FakeMember("b")
        node.hub.join(a, room: "r1", shard: node.hub.shards[0])
        node.hub.join(b, room: "r1", shard: node.hub.shards[1])
        for n in 0..<5 { node.hub.publish(.say(room: "r1", username: "a", text: "\(n)")) }
        node.runAll()
        let expected = (0..<5).map { sayFrame("a", "\($0)") }
        #expect(a.flushedFrames == expected)
        #expect(b.flushedFrames == expected)
        #expect(a.flushCount == 1)
        #expect(b.flushCount == 1)
    }

    // MARK: cross-loop hop (EmbeddedEventLoop is always "in" its loop, so these use ManualEventLoop)

    @Test func deliverLocallyIsInlineOnTheCurrentLoopAndHopsOnceToEachOther() {
        let world = LoopWorld()
        let loops = [ManualEventLoop("L0", world: world), ManualEventLoop("L1", world: world), ManualEventLoop("L2", world: world)]
        let fanout = RecordingFanout()
        let hub = RoomHub(eventLoops: loops, fanout: fanout, metrics: ChatMetrics(), maxWriteDelay: .zero)
        let members = (0..<3).map { FakeMember("m\($0)") }
        for (index, member) in members.enumerated() {
            loops[index].enter { hub.join(member, room: "r1", shard: hub.shards[index]) }
        }

        loops[1].enter { hub.deliverLocally(ChatBroadcast(.join(room: "r1", username: "x"))) }
        // Noted inline on L1 (its write is queued there), one hop queued on each other loop.
        #expect(members[1].frames.isEmpty)
        #expect(members[0].frames.isEmpty)
        #expect(members[2].frames.isEmpty)
        #expect(loops[0].pendingTasks == 1)
        #expect(loops[1].pendingTasks == 1)
        #expect(loops[2].pendingTasks == 1)

        for loop in loops { loop.run() }
        for member in members {
            #expect(member.flushedBatches == [[joinFrame("x")]])
        }
    }

    @Test func deliverLocallyFromOutsideEveryLoopHopsToAll() {
        let world = LoopWorld()
        let loops = [ManualEventLoop("L0", world: world), ManualEventLoop("L1", world: world)]
        let hub = RoomHub(eventLoops: loops, fanout: RecordingFanout(), metrics: ChatMetrics(), maxWriteDelay: .zero)
        let a = FakeMember("a"), b = FakeMember("b")
        loops[0].enter { hub.join(a, room: "r1", shard: hub.shards[0]) }
        loops[1].enter { hub.join(b, room: "r1", shard: hub.shards[1]) }

        hub.deliverLocally(ChatBroadcast(.join(room: "r1", username: "x")))
        #expect(a.frames.isEmpty)
        #expect(b.frames.isEmpty)
        for loop in loops { loop.run() }
        #expect(a.flushedFrames == [joinFrame("x")])
        #expect(b.flushedFrames == [joinFrame("x")])
    }

    @Test func aMemberJoiningOnAnotherLoopWhileABroadcastHopsThereDoesNotGetIt() {
        let world = LoopWorld()
        let loops = [ManualEventLoop("L0", world: world), ManualEventLoop("L1", world: world)]
        let hub = RoomHub(eventLoops: loops, fanout: RecordingFanout(), metrics: ChatMetrics(), maxWriteDelay: .zero)
        let a = FakeMember("a"), early = FakeMember("early"), late = FakeMember("late")
        loops[0].enter { hub.join(a, room: "r1", shard: hub.shards[0]) }
        loops[1].enter { hub.join(early, room: "r1", shard: hub.shards[1]) }
        loops[1].enter { hub.deliverLocally(ChatBroadcast(.say(room: "r1", username: "a", text: "queued"))) }

        // The broadcast reached the node; its hop to L0 waits while `late` joins on L0.
        loops[0].enter { hub.join(late, room: "r1", shard: hub.shards[0]) }
        for loop in loops { loop.run() }
        #expect(a.frames == [sayFrame("a", "queued")])
        #expect(early.frames == [sayFrame("a", "queued")])
        #expect(late.frames.isEmpty)

        // What reaches the node after the join reaches it, after everything before, in order.
        loops[1].enter { hub.deliverLocally(ChatBroadcast(.say(room: "r1", username: "a", text: "next"))) }
        for loop in loops { loop.run() }
        #expect(late.frames == [sayFrame("a", "next")])
        #expect(a.frames == [sayFrame("a", "queued"), sayFrame("a", "next")])
    }

    @Test func hoppedBroadcastsKeepThePublishersOrder() {
        let world = LoopWorld()
        let loops = [ManualEventLoop("L0", world: world), ManualEventLoop("L1", world: world)]
        let fanout = RecordingFanout(echo: true)
        let hub = RoomHub(eventLoops: loops, fanout: fanout, metrics: ChatMetrics(), maxWriteDelay: .zero)
        let a = FakeMember("a"), b = FakeMember("b")
        loops[0].enter { hub.join(a, room: "r1", shard: hub.shards[0]) }
        loops[1].enter { hub.join(b, room: "r1", shard: hub.shards[1]) }

        loops[0].enter {
            for n in 0..<10 { hub.publish(.say(room: "r1", username: "a", text: "\(n)")) }
        }
        for loop in loops { loop.run() }
        let expected = (0..<10).map { sayFrame("a", "\($0)") }
        #expect(a.flushedFrames == expected)
        #expect(b.flushedFrames == expected)
        #expect(a.flushCount == 1)
    }

    // MARK: LocalFanout

    @Test func localFanoutDeliversPublishedMessagesToLocalMembers() {
        let loops = [EmbeddedEventLoop(), EmbeddedEventLoop()]
        let hub = RoomHub(eventLoops: loops, fanout: LocalFanout(eventLoop: loops[0]), metrics: ChatMetrics(), maxWriteDelay: .zero)
        let a = FakeMember("a"), b = FakeMember("b"), other = FakeMember("other")
        hub.join(a, room: "r1", shard: hub.shards[0])
        hub.join(b, room: "r1", shard: hub.shards[1])
        hub.join(other, room: "r2", shard: hub.shards[0])
        hub.publish(.say(room: "r1", username: "a", text: "hi"))
        for loop in loops { loop.run() }
        #expect(a.flushedFrames == [sayFrame("a", "hi")])
        #expect(b.flushedFrames == [sayFrame("a", "hi")])
        #expect(other.frames.isEmpty)
    }

    @Test func localFanoutIsReadyAddsNothingToHealthAndDrainsAndStopsAtOnce() throws {
        let loop = EmbeddedEventLoop()
        let fanout = LocalFanout(eventLoop: loop)
        try fanout.start(FanoutStartContext())
        #expect(fanout.health.isReady)
        #expect(fanout.health.statusLine == nil)
        #expect(fanout.health.details.isEmpty)
        let drained = fanout.drain(deadline: loop.now + .seconds(10))
        #expect(throws: Never.self) { try drained.wait() }
        #expect(throws: Never.self) { try fanout.stop().wait() }
    }

    @Test func localFanoutBeforeStartDropsPublishesWithoutCrashing() {
        let fanout = LocalFanout(eventLoop: EmbeddedEventLoop())
        fanout.subscribe(room: "r1")
        fanout.publish(.join(room: "r1", username: "a"))
        fanout.unsubscribe(room: "r1")
    }
}
