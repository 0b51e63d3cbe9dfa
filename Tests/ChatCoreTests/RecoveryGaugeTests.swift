import NIOCore
import Testing
@testable import ChatCore

/// sessions_held and bytes_held follow what the store keeps.
@Suite("Recovery gauges")
struct RecoveryGaugeTests {
    let wall = ManualWallClock()

    @Test func heldSessionsAndBytesFollowRecordsAndMessages() {
        let node = StoreNode("n1", epoch: 1, wall: wall)
        #expect(node.store.bytesHeld == 0)
        let connection = FakeRecoverableSession()
        let record = node.store.open(room: "r1", session: connection)
        let recordOnly = node.store.bytesHeld
        #expect(recordOnly > 100)
        node.store.joined(pid: record.pid, username: "alice")
        node.store.detached(pid: record.pid)
        #expect(node.store.heldSessions == 1)
        #expect(node.metrics.snapshot.sessionsHeld == 1)
        node.deliver("a said something of some length")
        #expect(node.store.bytesHeld > recordOnly + 40)
        node.advance(1_000, wall: wall)
        #expect(node.metrics.snapshot.bytesHeld == node.store.bytesHeld)
        // Expired: the quit is out, the message aged out, the tombstone is still counted.
        node.advance(10_000, wall: wall)
        #expect(node.store.heldSessions == 0)
        #expect(node.metrics.snapshot.sessionsHeld == 0)
        #expect(node.store.messagesKept == 0)
        #expect(node.store.bytesHeld > 0)
        // The tombstone goes after max_disconnection more.
        node.advance(11_000, wall: wall)
        #expect(node.store.bytesHeld == 0)
        #expect(node.metrics.snapshot.bytesHeld == 0)
    }
}
