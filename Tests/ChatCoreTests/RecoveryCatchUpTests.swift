import NIOCore
import Testing
@testable import ChatCore

/// A client may have had messages the recovering node has not received yet (in flight on a
/// live link): the node waits for them, at most catch_up, so none is delivered twice.
@Suite("Recovery catch-up")
struct RecoveryCatchUpTests {
    let wall = ManualWallClock()
    let peer = MessageOrigin.originID(epoch: 77)

    /// A session held on this node that the client last saw at `peer`:5, while the node has 3.
    func setUp(peerLive: Bool) -> (StoreNode, SessionRecord) {
        let node = StoreNode("n2", epoch: 2, wall: wall)
        node.replication.peer("n7", epoch: 77, up: peerLive)
        let record = node.store.open(room: "r1", session: FakeRecoverableSession())
        node.store.joined(pid: record.pid, username: "alice")
        for n in 1...3 as ClosedRange<UInt64> { node.deliver("\(n)", from: MessageOrigin(origin: peer, sequence: n)) }
        node.store.detached(pid: record.pid)
        return (node, record)
    }

    var aheadOffset: String { RecoveryOffset([peer: 5]).string }

    @Test func waitsUntilThePeersMessagesArriveThenReplaysOnlyWhatCameAfter() throws {
        let (node, record) = setUp(peerLive: true)
        var outcome: RecoveryOutcome?
        node.store.recover(pid: record.pid, offset: aheadOffset, room: "r1", session: FakeRecoverableSession()) { outcome = $0 }
        #expect(outcome == nil)
        node.loop.advanceTime(by: .milliseconds(20))
        #expect(outcome == nil)
        for n in 4...6 as ClosedRange<UInt64> { node.deliver("\(n)", from: MessageOrigin(origin: peer, sequence: n)) }
        node.loop.advanceTime(by: .milliseconds(20))
        #expect(try #require(outcome).missedTexts == ["6"])
    }

    @Test func answersAfterCatchUpWhenTheMessagesNeverCome() throws {
        let (node, record) = setUp(peerLive: true)
        var outcome: RecoveryOutcome?
        node.store.recover(pid: record.pid, offset: aheadOffset, room: "r1", session: FakeRecoverableSession()) { outcome = $0 }
        node.loop.advanceTime(by: .milliseconds(180))
        #expect(outcome == nil)
        node.loop.advanceTime(by: .milliseconds(40))
        #expect(try #require(outcome).missedTexts == [])
        #expect(node.metrics.snapshot.succeeded == 1)
    }

    @Test func doesNotWaitForAnOriginWhoseLinkIsDown() throws {
        let (node, record) = setUp(peerLive: false)
        #expect(try #require(node.recover(pid: record.pid, offset: aheadOffset)).missedTexts == [])
    }

    @Test func doesNotWaitWhenTheNodeIsAhead() throws {
        let (node, record) = setUp(peerLive: true)
        let behind = RecoveryOffset([peer: 1]).string
        #expect(try #require(node.recover(pid: record.pid, offset: behind)).missedTexts == ["2", "3"])
    }

    @Test func aClaimDuringTheWaitIsSeenWhenItEnds() throws {
        let (node, record) = setUp(peerLive: true)
        var outcome: RecoveryOutcome?
        node.store.recover(pid: record.pid, offset: aheadOffset, room: "r1", session: FakeRecoverableSession()) { outcome = $0 }
        var ended = try #require(node.store.record(pid: record.pid))
        ended.state = .ended(atMillis: wall.now)
        ended.version += 1
        node.store.merge(ended, fromOwner: true)
        node.loop.advanceTime(by: .milliseconds(20))
        #expect(outcome?.failure == .ended)
    }
}
