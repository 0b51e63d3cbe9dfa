import NIOCore
import Testing
@testable import ChatCore

/// An explicit disconnect's quit is published by the store, only when the end takes effect,
/// so the room never hears a quit for a session that a recovery (here or on another node)
/// took first; and if another node's recovery wins over an end already announced here, the
/// room hears the session come back.
@Suite("Session end announcements")
struct SessionEndAnnouncementTests {
    let wall = ManualWallClock()

    func joinedSession(on node: StoreNode, connection: FakeRecoverableSession) -> SessionRecord {
        let record = node.store.open(room: "r1", session: connection)
        node.store.joined(pid: record.pid, username: "alice")
        return record
    }

    @Test func anExplicitEndPublishesTheQuitOnce() {
        let node = StoreNode("n1", epoch: 1, wall: wall)
        let connection = FakeRecoverableSession()
        let record = joinedSession(on: node, connection: connection)
        node.store.ended(pid: record.pid, session: connection)
        node.store.ended(pid: record.pid, session: connection)
        #expect(node.announced == [.quit(room: "r1", username: "alice")])
        #expect(node.recover(pid: record.pid, offset: nil)?.failure == .ended)
    }

    @Test func anEndWithoutAJoinAnnouncesNothing() {
        let node = StoreNode("n1", epoch: 1, wall: wall)
        let connection = FakeRecoverableSession()
        let record = node.store.open(room: "r1", session: connection)
        node.store.ended(pid: record.pid, session: connection)
        #expect(node.announced.isEmpty)
    }

    @Test func theEndOfAConnectionThatWasTakenOverAnnouncesNothing() {
        let node = StoreNode("n1", epoch: 1, wall: wall)
        let old = FakeRecoverableSession("old")
        let record = joinedSession(on: node, connection: old)
        let successor = FakeRecoverableSession("new")
        #expect(node.recover(pid: record.pid, offset: nil, session: successor)?.recoveredRecord != nil)
        #expect(old.takenOverCount == 1)
        // The old connection's `41` arrives after the recovery: it ends nothing.
        node.store.ended(pid: record.pid, session: old)
        #expect(node.announced.isEmpty)
        #expect(node.store.record(pid: record.pid)?.state == .live)
    }

    @Test func aRecoveryElsewhereThatWinsOverAnAnnouncedEndIsAnnouncedAsAJoin() throws {
        let n1 = StoreNode("n1", epoch: 1, wall: wall)
        let n2 = StoreNode("n2", epoch: 2, wall: wall)
        let connection = FakeRecoverableSession()
        let record = joinedSession(on: n1, connection: connection)
        n2.store.merge(try #require(n1.store.record(pid: record.pid)), fromOwner: true)
        // At the same moment: the client's `41` on n1, a recovery of its pid on n2.
        n1.store.ended(pid: record.pid, session: connection)
        #expect(n2.recover(pid: record.pid, offset: nil)?.recoveredRecord != nil)
        #expect(n1.announced == [.quit(room: "r1", username: "alice")])
        // The copies cross: n2's claim outranks n1's end on both nodes.
        n2.store.merge(try #require(n1.store.record(pid: record.pid)), fromOwner: true)
        n1.store.merge(try #require(n2.store.record(pid: record.pid)), fromOwner: true)
        #expect(n1.store.record(pid: record.pid) == n2.store.record(pid: record.pid))
        #expect(n1.store.record(pid: record.pid)?.owner == "n2")
        #expect(n1.announced == [.quit(room: "r1", username: "alice"), .join(room: "r1", username: "alice")])
        #expect(n2.announced.isEmpty)
        // A later copy of the same claim announces nothing more.
        n1.store.merge(try #require(n2.store.record(pid: record.pid)), fromOwner: true)
        #expect(n1.announced.count == 2)
    }
}
