import NIOCore
import Testing
@testable import ChatCore

/// One session, never two: recovering a pid that is live takes it over, and the connection
/// that had it is told to close without a quit.
@Suite("Session takeover")
struct SessionTakeoverTests {
    let wall = ManualWallClock()

    @Test func recoveringALiveSessionOnTheSameNodeClosesTheOldConnection() throws {
        let node = StoreNode("n1", epoch: 1, wall: wall)
        let old = FakeRecoverableSession("old"), new = FakeRecoverableSession("new")
        let opened = node.store.open(room: "r1", session: old)
        node.store.joined(pid: opened.pid, username: "alice")
        let had = node.deliver("one")
        node.deliver("two")
        let outcome = try #require(node.recover(pid: opened.pid, offset: had, session: new))
        #expect(old.takenOverCount == 1)
        #expect(new.takenOverCount == 0)
        #expect(outcome.missedTexts == ["two"])
        let record = try #require(outcome.recoveredRecord)
        #expect(record.claims == 1 && record.changes == 0 && record.owner == "n1")
        #expect(node.metrics.snapshot.takenOver == 1)
        #expect(node.replication.replicated.last == record)
        // The old connection's close afterwards, naming itself, changes nothing.
        node.store.detached(pid: opened.pid, session: old)
        node.store.ended(pid: opened.pid, session: old)
        #expect(node.store.record(pid: opened.pid) == record)
        node.store.detached(pid: opened.pid, session: new)
        #expect(node.store.record(pid: opened.pid)?.isHeld == true)
    }

    @Test func aClaimFromAnotherNodeClosesTheConnectionHere() throws {
        let owner = StoreNode("n1", epoch: 1, wall: wall), other = StoreNode("n2", epoch: 2, wall: wall)
        other.replication.peer("n1", epoch: 1, up: true)
        let connection = FakeRecoverableSession("on n1")
        let opened = owner.store.open(room: "r1", session: connection)
        owner.store.joined(pid: opened.pid, username: "alice")
        other.store.merge(try #require(owner.store.record(pid: opened.pid)), fromOwner: true)

        let outcome = try #require(other.recover(pid: opened.pid, offset: nil, session: FakeRecoverableSession("on n2")))
        let claim = try #require(outcome.recoveredRecord)
        #expect(claim.owner == "n2" && claim.ownerEpoch == 2 && claim.claims == 1)
        #expect(other.metrics.snapshot.takenOver == 1)
        #expect(connection.takenOverCount == 0)
        owner.store.merge(try #require(other.replication.replicated.last), fromOwner: true)
        #expect(connection.takenOverCount == 1)
        #expect(owner.store.record(pid: opened.pid)?.owner == "n2")
        // A later change by the old owner cannot undo the claim anywhere.
        owner.store.detached(pid: opened.pid)
        #expect(owner.store.record(pid: opened.pid)?.owner == "n2")
    }

    @Test func ofTwoConcurrentClaimsTheLowerNameKeepsItAndTheOtherConnectionCloses() throws {
        let owner = StoreNode("n1", epoch: 1, wall: wall)
        let b = StoreNode("b", epoch: 2, wall: wall), c = StoreNode("c", epoch: 3, wall: wall)
        let opened = owner.store.open(room: "r1", session: FakeRecoverableSession())
        owner.store.detached(pid: opened.pid)
        let held = try #require(owner.store.record(pid: opened.pid))
        b.store.merge(held, fromOwner: true)
        c.store.merge(held, fromOwner: true)
        let atB = FakeRecoverableSession("b"), atC = FakeRecoverableSession("c")
        #expect(b.recover(pid: opened.pid, offset: nil, session: atB)?.recoveredRecord != nil)
        #expect(c.recover(pid: opened.pid, offset: nil, session: atC)?.recoveredRecord != nil)
        let claimB = try #require(b.replication.replicated.last), claimC = try #require(c.replication.replicated.last)
        b.store.merge(claimC, fromOwner: true)
        c.store.merge(claimB, fromOwner: true)
        owner.store.merge(claimC, fromOwner: true)
        owner.store.merge(claimB, fromOwner: true)
        #expect(atB.takenOverCount == 0)
        #expect(atC.takenOverCount == 1)
        for node in [owner, b, c] {
            #expect(node.store.record(pid: opened.pid)?.owner == "b")
        }
    }

    @Test func recoveringAHeldSessionTakesNothingOver() throws {
        let node = StoreNode("n1", epoch: 1, wall: wall)
        let old = FakeRecoverableSession()
        let opened = node.store.open(room: "r1", session: old)
        node.store.detached(pid: opened.pid)
        #expect(node.recover(pid: opened.pid, offset: nil)?.recoveredRecord != nil)
        #expect(old.takenOverCount == 0)
        #expect(node.metrics.snapshot.takenOver == 0)
    }
}
