import NIOCore
import Testing
@testable import ChatCore

/// Every way a recovery can fail gets its reason, is counted, and leaks nothing of the session.
@Suite("Recovery failures")
struct RecoveryFailureTests {
    let wall = ManualWallClock()

    func joinedSession(on node: StoreNode, room: String = "r1") -> SessionRecord {
        let record = node.store.open(room: room, session: FakeRecoverableSession())
        node.store.joined(pid: record.pid, username: "alice")
        return record
    }

    @Test func anUnknownOrForgedPidIsUnknown() {
        let node = StoreNode("n1", epoch: 1, wall: wall)
        _ = joinedSession(on: node)
        #expect(node.recover(pid: "AAAAAAAAAAAAAAAAAAAA", offset: nil)?.failure == .unknownPid)
        #expect(node.recover(pid: "", offset: "")?.failure == .unknownPid)
        #expect(node.recover(pid: String(repeating: "x", count: 10_000), offset: nil)?.failure == .unknownPid)
    }

    @Test func anotherRoomsPidIsWrongRoom() {
        let node = StoreNode("n1", epoch: 1, wall: wall)
        let record = joinedSession(on: node, room: "r1")
        node.store.detached(pid: record.pid)
        #expect(node.recover(pid: record.pid, offset: nil, room: "r2")?.failure == .wrongRoom)
        #expect(node.store.record(pid: record.pid)?.isHeld == true)
    }

    @Test(arguments: ["garbage", "1.2.3", String(repeating: "1.1-", count: 120) + "1.1", "Z.1", "{\"a\":1}"])
    func aMalformedOffsetIsBadOffset(offset: String) {
        let node = StoreNode("n1", epoch: 1, wall: wall)
        let record = joinedSession(on: node)
        node.store.detached(pid: record.pid)
        #expect(node.recover(pid: record.pid, offset: offset)?.failure == .badOffset)
        #expect(node.store.record(pid: record.pid)?.isHeld == true)
    }

    @Test func anOffsetClaimingMoreOfThisNodesMessagesThanItSentIsBadOffset() {
        let node = StoreNode("n1", epoch: 1, wall: wall)
        let record = joinedSession(on: node)
        node.deliver("one")
        node.store.detached(pid: record.pid)
        let forged = RecoveryOffset([node.origin: 2]).string
        #expect(node.recover(pid: record.pid, offset: forged)?.failure == .badOffset)
        #expect(node.recover(pid: record.pid, offset: forged, room: "r1")?.failure == .badOffset)
        let honest = RecoveryOffset([node.origin: 1]).string
        #expect(node.recover(pid: record.pid, offset: honest)?.missedTexts == [])
    }

    @Test func anExplicitlyEndedSessionIsEnded() {
        let node = StoreNode("n1", epoch: 1, wall: wall)
        let record = joinedSession(on: node)
        node.store.ended(pid: record.pid)
        #expect(node.recover(pid: record.pid, offset: nil)?.failure == .ended)
    }

    @Test func anOffsetUnderTheFloorIsTooOld() {
        let policy = RecoveryPolicy(maxDisconnection: .seconds(10), roomMessages: 2, historyBytes: 1 << 20, catchUp: .zero)
        let node = StoreNode("n1", epoch: 1, policy: policy, wall: wall)
        let record = joinedSession(on: node)
        let had = node.deliver("1")
        node.store.detached(pid: record.pid)
        node.deliver("2"); node.deliver("3"); node.deliver("4")
        #expect(node.recover(pid: record.pid, offset: had)?.failure == .offsetTooOld)
    }

    @Test func aSessionHeldSinceBeforeThisNodeStartedIsHistoryIncomplete() throws {
        let owner = StoreNode("n1", epoch: 1, wall: wall)
        let record = joinedSession(on: owner)
        owner.store.detached(pid: record.pid)
        wall.advance(milliseconds: 1_000)
        let late = StoreNode("n2", epoch: 2, wall: wall)  // started after the session was held
        late.store.merge(try #require(owner.store.record(pid: record.pid)), fromOwner: true)
        #expect(late.recover(pid: record.pid, offset: nil)?.failure == .historyIncomplete)
    }

    @Test func everyFailureIsCountedByReasonAndAttempted() {
        let node = StoreNode("n1", epoch: 1, wall: wall)
        let record = joinedSession(on: node)
        node.store.detached(pid: record.pid)
        _ = node.recover(pid: "nope", offset: nil)
        _ = node.recover(pid: record.pid, offset: "bad")
        _ = node.recover(pid: record.pid, offset: nil, room: "elsewhere")
        _ = node.recover(pid: record.pid, offset: nil)
        let counts = node.metrics.snapshot
        #expect(counts.attempted == 4)
        #expect(counts.failed == [.unknownPid: 1, .badOffset: 1, .wrongRoom: 1])
        #expect(counts.succeeded == 1)
    }

    @Test func failuresTakeNothingOverAndChangeNoRecord() throws {
        let node = StoreNode("n1", epoch: 1, wall: wall)
        let live = FakeRecoverableSession()
        let record = node.store.open(room: "r1", session: live)
        let before = try #require(node.store.record(pid: record.pid))
        _ = node.recover(pid: record.pid, offset: "bad")
        _ = node.recover(pid: record.pid, offset: nil, room: "r2")
        #expect(live.takenOverCount == 0)
        #expect(node.store.record(pid: record.pid) == before)
    }
}
