import ClusterConfig
import NIOCore
import Testing
@testable import RedisFanout

/// The cluster fanout's outbox keeps each room's says in order while slots move between
/// nodes: says of a slot are on the wire to one node at a time, refused ones go back ahead of
/// the slot's later says, and a changed slot map moves waiting says without reordering them.
@Suite struct RedisClusterFanoutOutboxTests {
    let nodeA = HostPort(host: "127.0.0.1", port: 7001)
    let nodeB = HostPort(host: "127.0.0.1", port: 7002)

    func say(_ sequence: UInt64, slot: Int, room: String = "r", at time: UInt64 = 0) -> RedisClusterPublish {
        RedisClusterPublish(sequence: sequence, room: room, channel: room, payload: "\(sequence)", slot: slot, enqueuedAt: time)
    }

    /// Everything waiting for `target`, taken off in order.
    func takeAll(_ outbox: inout RedisClusterOutbox, _ target: HostPort) -> [UInt64] {
        var taken: [UInt64] = []
        while let next = outbox.head(of: target), outbox.canSend(slot: next.slot, to: target),
              let publish = outbox.takeHead(of: target) {
            taken.append(publish.sequence)
        }
        return taken
    }

    @Test func saysGoToTheirSlotsOwnerAndWaitWhenNoOneOwnsIt() {
        var outbox = RedisClusterOutbox()
        let owners: [Int: HostPort] = [1: nodeA, 2: nodeB]
        outbox.enqueue(say(0, slot: 1), owner: { owners[$0] })
        outbox.enqueue(say(1, slot: 2), owner: { owners[$0] })
        outbox.enqueue(say(2, slot: 3), owner: { owners[$0] })
        #expect(outbox.head(of: nodeA)?.sequence == 0)
        #expect(outbox.head(of: nodeB)?.sequence == 1)
        #expect(outbox.unrouted.map(\.sequence) == [2])
        #expect(outbox.queuedCount == 3)
    }

    @Test func aSlotMovedWhileItsSaysAreOutWaitsForThemAndTheRefusedGoFirst() {
        var outbox = RedisClusterOutbox()
        var owners: [Int: HostPort] = [5: nodeA]
        for sequence in 0..<3 { outbox.enqueue(say(UInt64(sequence), slot: 5), owner: { owners[$0] }) }
        let sent = (0..<3).compactMap { _ in outbox.takeHead(of: nodeA) }
        #expect(sent.map(\.sequence) == [0, 1, 2])
        // The slot moves to B; a new say arrives there while 0-2 are still out to A.
        owners[5] = nodeB
        outbox.reroute(owner: { owners[$0] })
        outbox.enqueue(say(3, slot: 5), owner: { owners[$0] })
        #expect(!outbox.canSend(slot: 5, to: nodeB))
        // A took 0, refused 1 and 2 (MOVED): they go to B ahead of 3, once both are back.
        outbox.answered(sent[0], owner: { owners[$0] })
        outbox.refused(sent[1], owner: { owners[$0] })
        #expect(!outbox.canSend(slot: 5, to: nodeB))
        outbox.refused(sent[2], owner: { owners[$0] })
        #expect(outbox.canSend(slot: 5, to: nodeB))
        #expect(takeAll(&outbox, nodeB) == [1, 2, 3])
        #expect(outbox.inFlightCount == 3)
        #expect(outbox.queuedCount == 0)
    }

    @Test func otherSlotsAreNotHeldBackByAMovingOne() {
        var outbox = RedisClusterOutbox()
        var owners: [Int: HostPort] = [5: nodeA, 6: nodeB]
        outbox.enqueue(say(0, slot: 5), owner: { owners[$0] })
        _ = outbox.takeHead(of: nodeA)
        owners[5] = nodeB
        outbox.enqueue(say(1, slot: 5, room: "moving"), owner: { owners[$0] })
        outbox.enqueue(say(2, slot: 6, room: "other"), owner: { owners[$0] })
        // B's head is slot 5 (held); the queue is per node, so B waits: order within a node
        // is kept simple, and the hold lasts one round trip.
        #expect(outbox.head(of: nodeB)?.sequence == 1)
        #expect(!outbox.canSend(slot: 5, to: nodeB))
        #expect(outbox.canSend(slot: 6, to: nodeB))
    }

    @Test func rerouteMergesMovedSaysInArrivalOrder() {
        var outbox = RedisClusterOutbox()
        var owners: [Int: HostPort] = [1: nodeA, 2: nodeB]
        outbox.enqueue(say(0, slot: 1), owner: { owners[$0] })
        outbox.enqueue(say(1, slot: 2), owner: { owners[$0] })
        outbox.enqueue(say(2, slot: 1), owner: { owners[$0] })
        outbox.enqueue(say(3, slot: 2), owner: { owners[$0] })
        owners[1] = nodeB
        outbox.reroute(owner: { owners[$0] })
        #expect(outbox.head(of: nodeA) == nil)
        #expect(takeAll(&outbox, nodeB) == [0, 1, 2, 3])
    }

    @Test func aLostConnectionSendsItsUnansweredSaysAgainFirst() {
        var outbox = RedisClusterOutbox()
        let owners: [Int: HostPort] = [9: nodeA]
        for sequence in 0..<2 { outbox.enqueue(say(UInt64(sequence), slot: 9), owner: { owners[$0] }) }
        let sent = (0..<2).compactMap { _ in outbox.takeHead(of: nodeA) }
        outbox.enqueue(say(2, slot: 9), owner: { owners[$0] })
        for publish in sent { outbox.refused(publish, owner: { owners[$0] }) }
        #expect(takeAll(&outbox, nodeA) == [0, 1, 2])
    }

    @Test func anAskedSayGoesToTheNamedNodeAndAReroutedOneForgetsAGoneTarget() {
        var outbox = RedisClusterOutbox()
        let owners: [Int: HostPort] = [4: nodeA]
        outbox.enqueue(say(0, slot: 4), owner: { owners[$0] })
        var publish = outbox.takeHead(of: nodeA)!
        publish.askTarget = nodeB
        outbox.refused(publish, owner: { owners[$0] })
        #expect(outbox.head(of: nodeB)?.sequence == 0)
        outbox.forgetAsks(to: nodeB, owner: { owners[$0] })
        #expect(outbox.head(of: nodeB) == nil)
        #expect(outbox.head(of: nodeA)?.sequence == 0)
    }

    @Test func theBufferDropsTheOldestAndWhatWaitedTooLong() {
        var outbox = RedisClusterOutbox()
        let owners: [Int: HostPort] = [1: nodeA, 2: nodeB]
        outbox.enqueue(say(0, slot: 2, at: 10), owner: { owners[$0] })
        outbox.enqueue(say(1, slot: 1, at: 20), owner: { owners[$0] })
        outbox.enqueue(say(2, slot: 3, at: 30), owner: { owners[$0] })
        outbox.enqueue(say(3, slot: 1, at: 40), owner: { owners[$0] })
        let droppedOldest = outbox.dropOldest()
        #expect(droppedOldest)
        #expect(outbox.head(of: nodeB) == nil)
        let droppedByAge = outbox.dropWaiting(enqueuedBefore: 35)
        #expect(droppedByAge == 2)
        #expect(outbox.queuedCount == 1)
        #expect(outbox.head(of: nodeA)?.sequence == 3)
        #expect(outbox.unrouted.isEmpty)
    }
}
