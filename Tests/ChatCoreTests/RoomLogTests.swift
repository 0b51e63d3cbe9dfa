import NIOCore
import NIOEmbedded
import Testing
@testable import ChatCore

/// A room's kept history on one node: its vector, its floors and its bounds.
@Suite("RoomLog")
struct RoomLogTests {
    let wall = ManualWallClock()

    @Test func offsetIsTheVectorJustAfterEachMessageAcrossInterleavedOrigins() {
        let node = StoreNode("n1", epoch: 1, wall: wall)
        let own = node.origin
        let a: UInt32 = 10, b: UInt32 = 11
        var offsets: [String] = []
        offsets.append(node.deliver("a1", from: MessageOrigin(origin: a, sequence: 1)))
        offsets.append(node.deliver("mine"))
        offsets.append(node.deliver("b1", from: MessageOrigin(origin: b, sequence: 1)))
        offsets.append(node.deliver("a2", from: MessageOrigin(origin: a, sequence: 2)))
        offsets.append(node.deliver("mine2"))
        let expected = [
            [a: 1], [a: 1, own: 1], [a: 1, b: 1, own: 1], [a: 2, b: 1, own: 1], [a: 2, b: 1, own: 2],
        ].map { RecoveryOffset($0 as [UInt32: UInt64]).string }
        #expect(offsets == expected)
        #expect(node.store.vector(of: "r1") == RecoveryOffset([a: 2, b: 1, own: 2]))
        #expect(node.store.vector(of: "other") == RecoveryOffset())
    }

    @Test func roomsHaveSeparateVectorsAndLocalSequences() {
        let node = StoreNode("n1", epoch: 1, wall: wall)
        node.deliver("x", room: "r1")
        node.deliver("y", room: "r1")
        node.deliver("z", room: "r2")
        #expect(node.store.vector(of: "r1") == RecoveryOffset([node.origin: 2]))
        #expect(node.store.vector(of: "r2") == RecoveryOffset([node.origin: 1]))
        #expect(node.store.originate(room: "r2") == MessageOrigin(origin: node.origin, sequence: 2))
    }

    @Test func aResentDuplicateIsKeptOnceAndCarriesTheCurrentVector() {
        let node = StoreNode("n1", epoch: 1, wall: wall)
        node.deliver("a1", from: MessageOrigin(origin: 5, sequence: 1))
        node.deliver("a2", from: MessageOrigin(origin: 5, sequence: 2))
        #expect(node.deliver("a1 again", from: MessageOrigin(origin: 5, sequence: 1)) == "5.2")
        #expect(node.store.messagesKept == 2)
    }

    @Test func firstMessageOfAnOriginSetsItsFloorJustBelowIt() throws {
        // The node came up while origin 5 was at 7: offsets at or above 6 are served, below are not.
        let node = StoreNode("n1", epoch: 1, wall: wall)
        let session = node.store.open(room: "r1", session: FakeRecoverableSession())
        node.store.joined(pid: session.pid, username: "u")
        node.deliver("7", from: MessageOrigin(origin: 5, sequence: 7))
        node.deliver("8", from: MessageOrigin(origin: 5, sequence: 8))
        node.store.detached(pid: session.pid)
        #expect(node.recover(pid: session.pid, offset: "5.6")?.missedTexts == ["7", "8"])
    }

    @Test func offsetBelowTheFirstMessageIsTooOld() throws {
        let node = StoreNode("n1", epoch: 1, wall: wall)
        let session = node.store.open(room: "r1", session: FakeRecoverableSession())
        node.store.joined(pid: session.pid, username: "u")
        node.deliver("7", from: MessageOrigin(origin: 5, sequence: 7))
        node.store.detached(pid: session.pid)
        #expect(node.recover(pid: session.pid, offset: "5.5")?.failure == .offsetTooOld)
        #expect(node.recover(pid: session.pid, offset: nil)?.failure == .offsetTooOld)
    }

    @Test func aSequenceGapRaisesTheFloorToJustBeforeTheNewMessage() throws {
        let node = StoreNode("n1", epoch: 1, wall: wall)
        let session = node.store.open(room: "r1", session: FakeRecoverableSession())
        node.store.joined(pid: session.pid, username: "u")
        for n in [1, 2, 3, 6, 7] as [UInt64] { node.deliver("\(n)", from: MessageOrigin(origin: 5, sequence: n)) }
        node.store.detached(pid: session.pid)
        // 4 and 5 never arrived: a client at 2 or 3 cannot be served, one at 5 can.
        #expect(node.recover(pid: session.pid, offset: "5.3")?.failure == .offsetTooOld)
        #expect(node.recover(pid: session.pid, offset: "5.5")?.missedTexts == ["6", "7"])
    }

    @Test func aReportedGapBlocksRecoveryUntilTheOriginIsHeardAgain() throws {
        let node = StoreNode("n1", epoch: 1, wall: wall)
        let first = node.store.open(room: "r1", session: FakeRecoverableSession())
        node.store.joined(pid: first.pid, username: "u")
        node.deliver("1", from: MessageOrigin(origin: 5, sequence: 1))
        node.store.detached(pid: first.pid)
        node.store.noteGap(origin: 5, room: nil)
        #expect(node.recover(pid: first.pid, offset: "5.1")?.failure == .offsetTooOld)
        // The next message shows nothing was lost in this room.
        node.deliver("2", from: MessageOrigin(origin: 5, sequence: 2))
        #expect(node.recover(pid: first.pid, offset: "5.1")?.missedTexts == ["2"])
    }

    @Test func roomMessagesBoundEvictsTheOldestAndRaisesItsFloor() throws {
        let policy = RecoveryPolicy(maxDisconnection: .seconds(10), roomMessages: 3, historyBytes: 1 << 20, catchUp: .zero)
        let node = StoreNode("n1", epoch: 1, policy: policy, wall: wall)
        let session = node.store.open(room: "r1", session: FakeRecoverableSession())
        node.store.joined(pid: session.pid, username: "u")
        for n in 1...5 { node.deliver("\(n)", from: MessageOrigin(origin: 5, sequence: UInt64(n))) }
        node.deliver("other room", room: "r2")
        #expect(node.store.messagesKept == 4)
        node.store.detached(pid: session.pid)
        #expect(node.recover(pid: session.pid, offset: "5.1")?.failure == .offsetTooOld)
        #expect(node.recover(pid: session.pid, offset: "5.2")?.missedTexts == ["3", "4", "5"])
    }

    @Test func historyBytesEvictsTheGloballyOldestFirst() throws {
        let frameCost = RoomLog.cost(of: RoomLog.Entry(origin: 5, sequence: 1,
            frame: ChatBroadcast(.say(room: "rA", username: "u", text: "1")).withOffset("5.1").engineFrame,
            arrivedAt: .uptimeNanoseconds(0), serial: 1))
        // Room for three such messages, not four.
        let policy = RecoveryPolicy(maxDisconnection: .seconds(10), roomMessages: 100, historyBytes: frameCost * 3 + frameCost / 2, catchUp: .zero)
        let node = StoreNode("n1", epoch: 1, policy: policy, wall: wall)
        let sessionA = node.store.open(room: "rA", session: FakeRecoverableSession())
        let sessionB = node.store.open(room: "rB", session: FakeRecoverableSession())
        node.store.joined(pid: sessionA.pid, username: "u")
        node.store.joined(pid: sessionB.pid, username: "u")
        node.deliver("1", room: "rA", from: MessageOrigin(origin: 5, sequence: 1))
        node.deliver("1", room: "rB", from: MessageOrigin(origin: 5, sequence: 1))
        node.deliver("2", room: "rA", from: MessageOrigin(origin: 5, sequence: 2))
        node.deliver("2", room: "rB", from: MessageOrigin(origin: 5, sequence: 2))
        #expect(node.store.messagesKept == 3)
        node.store.detached(pid: sessionA.pid)
        node.store.detached(pid: sessionB.pid)
        // rA's first message went (the oldest of all); rB still has both.
        #expect(node.recover(pid: sessionA.pid, offset: "", room: "rA")?.failure == .offsetTooOld)
        #expect(node.recover(pid: sessionA.pid, offset: "5.1", room: "rA")?.missedTexts == ["2"])
        #expect(node.recover(pid: sessionB.pid, offset: "", room: "rB")?.missedTexts == ["1", "2"])
    }

    @Test func messagesOlderThanMaxDisconnectionAreEvictedByTheTimer() throws {
        let node = StoreNode("n1", epoch: 1, wall: wall)
        node.deliver("old", room: "r1")
        node.deliver("old", room: "r2")
        node.advance(5_000, wall: wall)
        node.deliver("newer", room: "r1")
        #expect(node.store.messagesKept == 3)
        // The timer looks every second: at 11 s the first two are past 10 s.
        node.advance(6_000, wall: wall)
        #expect(node.store.messagesKept == 1)
        node.advance(5_000, wall: wall)
        #expect(node.store.messagesKept == 0)
        #expect(node.store.bytesHeld == 0)
    }

    @Test func aBusyRoomBehindAQuietOnesOldMessageDoesNotGrowTheStampOrder() {
        let policy = RecoveryPolicy(maxDisconnection: .seconds(100), roomMessages: 10, historyBytes: 1 << 30, catchUp: .zero)
        let node = StoreNode("n1", epoch: 1, policy: policy, wall: wall)
        node.deliver("kept for long", room: "quiet")
        for n in 1...20_000 { node.deliver("\(n)", room: "busy") }
        #expect(node.store.messagesKept == 11)
        #expect(node.store.stampOrderLength <= 2 * 11 + 1024 + 1)
        // Both rooms still replay what they keep.
        #expect(node.store.vector(of: "busy") == RecoveryOffset([node.origin: 20_000]))
    }

    @Test func anOriginSilentForOriginSilenceLeavesTheVector() {
        let policy = RecoveryPolicy(maxDisconnection: .seconds(1), roomMessages: 10, historyBytes: 1 << 20, catchUp: .zero,
                                    originSilence: .seconds(3))
        let node = StoreNode("n1", epoch: 1, policy: policy, wall: wall)
        node.deliver("a", from: MessageOrigin(origin: 5, sequence: 1))
        node.advance(2_000, wall: wall)
        node.deliver("b", from: MessageOrigin(origin: 6, sequence: 1))
        node.advance(1_500, wall: wall)
        #expect(node.store.vector(of: "r1") == RecoveryOffset([6: 1]))
        node.advance(2_000, wall: wall)
        #expect(node.store.vector(of: "r1") == RecoveryOffset())
    }
}
