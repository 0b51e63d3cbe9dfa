import NIOCore
import Testing
@testable import ChatCore

/// A held session not recovered within max_disconnection: its quit is published once, by the
/// node responsible for it, and its record becomes a tombstone for max_disconnection more.
@Suite("Session expiry")
struct SessionExpiryTests {
    let wall = ManualWallClock()

    func heldSession(on node: StoreNode, username: String? = "alice") -> SessionRecord {
        let record = node.store.open(room: "r1", session: FakeRecoverableSession())
        if let username { node.store.joined(pid: record.pid, username: username) }
        node.store.detached(pid: record.pid)
        return node.store.record(pid: record.pid)!
    }

    @Test func theOwnerPublishesTheQuitOnceWhenMaxDisconnectionPasses() throws {
        let node = StoreNode("n1", epoch: 1, wall: wall)
        let record = heldSession(on: node)
        #expect(node.store.heldSessions == 1)
        node.advance(9_000, wall: wall)
        #expect(node.announced.isEmpty)
        #expect(node.recover(pid: record.pid, offset: nil, session: FakeRecoverableSession()) != nil) // still recoverable
        node.store.detached(pid: record.pid)
        let heldAgain = try #require(node.store.record(pid: record.pid))
        node.advance(11_000, wall: wall)
        #expect(node.announced == [.quit(room: "r1", username: "alice")])
        node.advance(30_000, wall: wall)
        #expect(node.announced.count == 1)
        #expect(heldAgain.isHeld)
        let tombstone = try #require(node.replication.replicated.last)
        #expect(tombstone.pid == record.pid)
        #expect(tombstone.isEnded)
        #expect(tombstone.version > heldAgain.version)
        #expect(node.store.heldSessions == 0)
    }

    @Test func aSessionThatNeverJoinedExpiresWithoutAQuit() {
        let node = StoreNode("n1", epoch: 1, wall: wall)
        let record = heldSession(on: node, username: nil)
        node.advance(12_000, wall: wall)
        #expect(node.announced.isEmpty)
        #expect(node.store.record(pid: record.pid)?.isEnded == true)
    }

    @Test func expiredIsTheReasonBeforeAndAfterTheTimerRan() {
        let node = StoreNode("n1", epoch: 1, wall: wall, replicated: false)
        let record = heldSession(on: node)
        wall.advance(milliseconds: 10_500) // the wall clock passed; the timer has not run
        #expect(node.recover(pid: record.pid, offset: nil)?.failure == .expired)
        node.loop.advanceTime(by: .seconds(1))
        #expect(node.store.record(pid: record.pid)?.isEnded == true)
        #expect(node.recover(pid: record.pid, offset: nil)?.failure == .expired)
        #expect(node.metrics.snapshot.failed == [.expired: 2])
    }

    @Test func tombstonesAreForgottenAfterMaxDisconnection() {
        let node = StoreNode("n1", epoch: 1, wall: wall)
        let record = node.store.open(room: "r1", session: FakeRecoverableSession())
        node.store.ended(pid: record.pid)
        #expect(node.store.allRecords.map(\.pid) == [record.pid])
        node.advance(9_000, wall: wall)
        #expect(node.store.allRecords.count == 1)
        node.advance(2_000, wall: wall)
        #expect(node.store.allRecords.isEmpty)
        #expect(node.recover(pid: record.pid, offset: nil)?.failure == .unknownPid)
    }

    /// n1 (the owner) dies; n2 and n3 both hold its session: only n2, the first live node after
    /// n1 in name order, publishes the quit and replicates the end; n3 takes that end.
    @Test func forADeadOwnerOnlyTheNextLiveNodeByNamePublishes() throws {
        let owner = StoreNode("n1", epoch: 1, wall: wall)
        let n2 = StoreNode("n2", epoch: 2, wall: wall), n3 = StoreNode("n3", epoch: 3, wall: wall)
        n2.replication.peer("n1", epoch: 1, up: true); n2.replication.peer("n3", epoch: 3, up: true)
        n3.replication.peer("n1", epoch: 1, up: true); n3.replication.peer("n2", epoch: 2, up: true)
        let record = owner.store.open(room: "r1", session: FakeRecoverableSession())
        owner.store.joined(pid: record.pid, username: "alice")
        let live = try #require(owner.store.record(pid: record.pid))
        n2.store.merge(live, fromOwner: true)
        n3.store.merge(live, fromOwner: true)
        // n1 is killed.
        n2.replication.peer("n1", epoch: 1, up: false); n2.store.peerLost(node: "n1", epoch: 1)
        n3.replication.peer("n1", epoch: 1, up: false); n3.store.peerLost(node: "n1", epoch: 1)
        #expect(n2.store.heldSessions == 1 && n3.store.heldSessions == 1)
        wall.advance(milliseconds: 11_000)
        n2.loop.advanceTime(by: .seconds(11))
        n3.loop.advanceTime(by: .seconds(11))
        #expect(n2.announced == [.quit(room: "r1", username: "alice")])
        #expect(n3.announced.isEmpty)
        #expect(n3.replication.replicated.isEmpty)
        let end = try #require(n2.replication.replicated.last)
        n3.store.merge(end, fromOwner: false)
        n3.loop.advanceTime(by: .seconds(5))
        #expect(n3.announced.isEmpty)
        #expect(n3.store.record(pid: record.pid)?.isEnded == true)
    }

    @Test func responsibilityWrapsAroundTheNameOrderAndSkipsTheLiveOwner() {
        let node = StoreNode("n1", epoch: 1, wall: wall)
        let record = SessionRecord(pid: "p", sid: "s", room: "r1", owner: "n3", ownerEpoch: 3, state: .held(sinceMillis: 0))
        node.replication.liveNodeNames = ["n2"]
        #expect(node.store.isResponsible(for: record))   // after n3 comes n1 (wrapping), n2 is after that
        node.replication.liveNodeNames = ["n0", "n2"]
        #expect(!node.store.isResponsible(for: record))  // n0 wraps first
        node.replication.liveNodeNames = ["n3"]
        #expect(!node.store.isResponsible(for: record))  // the owner is up: it does it
        var own = record
        own.owner = "n1"
        #expect(node.store.isResponsible(for: own))
    }

    @Test func whileTheOwnerIsUpOtherNodesNeverPublish() throws {
        let owner = StoreNode("n1", epoch: 1, wall: wall), other = StoreNode("n2", epoch: 2, wall: wall)
        other.replication.peer("n1", epoch: 1, up: true)
        let record = heldSession(on: owner)
        other.store.merge(record, fromOwner: true)
        wall.advance(milliseconds: 11_000)
        other.loop.advanceTime(by: .seconds(11))
        #expect(other.announced.isEmpty)
        owner.loop.advanceTime(by: .seconds(11))
        #expect(owner.announced.count == 1)
    }

    @Test func aLiveSessionOfAnUnreachableOwnerIsHeldAndExpires() throws {
        // n2 learnt the record from a third node, but never had a link to its owner n9.
        let node = StoreNode("n2", epoch: 2, wall: wall)
        node.store.merge(SessionRecord(pid: "p", sid: "s", room: "r1", username: "zed", owner: "n9", ownerEpoch: 9, version: 2), fromOwner: false)
        node.advance(1_000, wall: wall)
        #expect(node.store.heldSessions == 1)
        node.advance(11_000, wall: wall)
        #expect(node.announced == [.quit(room: "r1", username: "zed")])
    }

    @Test func aConnectionGoneWithoutAWordHasItsSessionHeldByTheSweep() throws {
        let node = StoreNode("n1", epoch: 1, wall: wall)
        var connection: FakeRecoverableSession? = FakeRecoverableSession()
        let kept = FakeRecoverableSession()
        let record = node.store.open(room: "r1", session: connection!)
        let other = node.store.open(room: "r1", session: kept)
        node.store.joined(pid: record.pid, username: "alice")
        node.advance(1_000, wall: wall)
        #expect(node.store.record(pid: record.pid)?.state == .live)
        connection = nil
        node.advance(1_000, wall: wall)
        let held = try #require(node.store.record(pid: record.pid))
        #expect(held.state == .held(sinceMillis: wall.now))
        #expect(node.replication.replicated.last == held)
        #expect(node.store.record(pid: other.pid)?.state == .live)
        node.advance(10_000, wall: wall)
        #expect(node.announced == [.quit(room: "r1", username: "alice")])
        #expect(connection == nil && kept.takenOverCount == 0)
    }

    @Test func aSessionLiveInThisNodesPreviousProcessIsHistoryIncompleteAndExpires() throws {
        let node = StoreNode("n1", epoch: 2, wall: wall)
        node.store.merge(SessionRecord(pid: "p", sid: "s", room: "r1", username: "old", owner: "n1", ownerEpoch: 1, version: 2), fromOwner: false)
        #expect(node.recover(pid: "p", offset: nil)?.failure == .historyIncomplete)
        node.advance(1_000, wall: wall)
        #expect(node.store.record(pid: "p")?.isHeld == true)
        #expect(node.recover(pid: "p", offset: nil)?.failure == .historyIncomplete)
        node.advance(10_000, wall: wall)
        #expect(node.announced == [.quit(room: "r1", username: "old")])
    }
}
