import ChatCore
import NIOCore
import NIOEmbedded
import SocketIO
import Testing
@testable import MeshFanout

/// What the node sees of the mesh through the `Fanout` lifecycle: health for /healthz and
/// STATUS=, a drain that waits for the peers' acknowledgements, and a stop that says goodbye.
@Suite struct MeshLifecycleTests {
    func connect(_ a1: TestNode, _ a2: TestNode) throws -> (dialed: EmbeddedChannel, accepted: EmbeddedChannel) {
        let dialed = try a1.link(role: .dialer(expectedPeer: "a2"))
        let accepted = try a2.link(role: .acceptor)
        try pump((a1, dialed), (a2, accepted))
        return (dialed, accepted)
    }

    /// The drain future's outcome, once there is one.
    final class Completion: @unchecked Sendable { // touched on the test's embedded loops only
        var done = false
    }

    func watch(_ future: EventLoopFuture<Void>) -> Completion {
        let completion = Completion()
        future.whenComplete { _ in completion.done = true }
        return completion
    }

    @Test func healthListsPeersUpAndDownAndIsAlwaysReady() throws {
        let a1 = TestNode("a1"), a2 = TestNode("a2")
        let before = a1.mesh.health
        #expect(before.isReady)
        #expect(before.statusLine == "mesh peers up 0/1")
        #expect(before.details.count == 1)
        #expect(before.details.first?.0 == "mesh")
        #expect(before.details.first?.1 == .object([("peers_up", .array([])), ("peers_down", .array([.string("a2")]))]))

        _ = try connect(a1, a2)
        let after = a1.mesh.health
        #expect(after.statusLine == "mesh peers up 1/1")
        #expect(after.details.first?.1 == .object([("peers_up", .array([.string("a2")])), ("peers_down", .array([]))]))
    }

    @Test func drainCompletesOnceThePeerHasAcknowledgedEveryPub() throws {
        let a1 = TestNode("a1"), a2 = TestNode("a2")
        let link = try connect(a1, a2)
        a2.mesh.subscribe(room: "r")
        try pump((a1, link.dialed), (a2, link.accepted))
        a1.mesh.publish(message("r", "last words"))
        try pump((a1, link.dialed), (a2, link.accepted))
        #expect(a2.delivery.delivered == [delivered("r", "last words")])

        let drained = watch(a1.mesh.drain(deadline: a1.loop.now + .seconds(5)))
        a1.loop.run()
        a1.loop.advanceTime(by: .milliseconds(40))
        #expect(!drained.done) // the PUB is not acknowledged yet (the ACK is lazy)

        a2.loop.advanceTime(by: MeshFanout.ackDelay)
        let seen = try pump((a1, link.dialed), (a2, link.accepted))
        #expect(seen.bToA == [.ack(1)])
        a1.loop.advanceTime(by: .milliseconds(20))
        #expect(drained.done)
    }

    @Test func drainCompletesTheMomentTheLastAckIsRead() throws {
        let a1 = TestNode("a1"), a2 = TestNode("a2")
        let link = try connect(a1, a2)
        a2.mesh.subscribe(room: "r")
        try pump((a1, link.dialed), (a2, link.accepted))
        a1.mesh.publish(message("r", "one"))
        try pump((a1, link.dialed), (a2, link.accepted))

        let started = a1.loop.now
        let drained = watch(a1.mesh.drain(deadline: started + .seconds(5)))
        a1.loop.run()
        #expect(!drained.done)

        // a2 acknowledges PUB 1 while PUB 2 is on its way: one ACK is not the last.
        a2.loop.advanceTime(by: MeshFanout.ackDelay)
        a1.mesh.publish(message("r", "two"))
        let first = try pump((a1, link.dialed), (a2, link.accepted))
        #expect(first.bToA == [.ack(1)])
        #expect(!drained.done)

        a2.loop.advanceTime(by: MeshFanout.ackDelay)
        let second = try pump((a1, link.dialed), (a2, link.accepted))
        #expect(second.bToA == [.ack(2)])
        // Done on reading the ACK: a1's clock has not moved, so no poll and no deadline did it.
        #expect(drained.done)
        #expect(a1.loop.now == started)
    }

    @Test func aLinkLostWhileDrainingEndsTheWaitAtOnce() throws {
        let a1 = TestNode("a1"), a2 = TestNode("a2")
        let link = try connect(a1, a2)
        a2.mesh.subscribe(room: "r")
        try pump((a1, link.dialed), (a2, link.accepted))
        a1.mesh.publish(message("r", "kept for a redial"))
        a1.loop.run()

        let started = a1.loop.now
        let drained = watch(a1.mesh.drain(deadline: started + .seconds(5)))
        a1.loop.run()
        #expect(!drained.done)
        _ = try link.dialed.close().wait()
        a1.loop.run()
        #expect(drained.done)
        #expect(a1.loop.now == started)
    }

    @Test func drainGivesUpAtTheDeadlineWhenAPeerNeverAcknowledges() throws {
        let a1 = TestNode("a1"), a2 = TestNode("a2")
        let link = try connect(a1, a2)
        a2.mesh.subscribe(room: "r")
        try pump((a1, link.dialed), (a2, link.accepted))
        a1.mesh.publish(message("r", "unanswered"))
        a1.loop.run()

        let drained = watch(a1.mesh.drain(deadline: a1.loop.now + .milliseconds(500)))
        a1.loop.run()
        a1.loop.advanceTime(by: .milliseconds(499))
        #expect(!drained.done)
        a1.loop.advanceTime(by: .milliseconds(1))
        #expect(drained.done)
    }

    @Test func drainDoesNotWaitForAPeerThatIsDown() throws {
        let a1 = TestNode("a1"), a2 = TestNode("a2")
        let link = try connect(a1, a2)
        a2.mesh.subscribe(room: "r")
        try pump((a1, link.dialed), (a2, link.accepted))
        _ = try link.accepted.close().wait()
        _ = try link.dialed.close().wait()
        a1.loop.run()
        a1.mesh.publish(message("r", "buffered for a redial"))
        a1.loop.run()

        let drained = watch(a1.mesh.drain(deadline: a1.loop.now + .seconds(5)))
        a1.loop.run()
        #expect(drained.done)
    }

    @Test func stopSaysGoodbyeOnEveryLinkAndClosesIt() throws {
        let a1 = TestNode("a1"), a2 = TestNode("a2")
        let link = try connect(a1, a2)
        let stopped = watch(a1.mesh.stop())
        a1.loop.run()
        #expect(stopped.done)
        #expect(try writtenFrames(link.dialed) == [.goodbye("node a1 is shutting down")])
        #expect(!link.dialed.isActive)
    }
}
