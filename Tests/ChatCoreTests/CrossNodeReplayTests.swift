import NIOCore
import Testing
@testable import ChatCore

/// The core property of cross-node recovery: two nodes that got the same messages in different
/// interleavings (each origin's order kept) agree on what an offset from one of them means, so
/// a client recovering at the other gets every message it missed exactly once, each origin's in
/// order.
@Suite("Cross-node replay")
struct CrossNodeReplayTests {
    /// A deterministic generator, so a failure can be replayed.
    struct SplitMix: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    /// One interleaving of `perOrigin` messages from each origin, each origin's in order.
    static func interleaving(origins: [UInt32], perOrigin: Int, rng: inout SplitMix) -> [MessageOrigin] {
        var next = Dictionary(uniqueKeysWithValues: origins.map { ($0, UInt64(1)) })
        var order: [MessageOrigin] = []
        while let origin = next.filter({ $0.value <= UInt64(perOrigin) }).keys.sorted().randomElement(using: &rng) {
            order.append(MessageOrigin(origin: origin, sequence: next[origin]!))
            next[origin]! += 1
        }
        return order
    }

    static func label(_ origin: MessageOrigin) -> String { "\(origin.origin)-\(origin.sequence)" }

    @Test(arguments: [1, 2, 3, 4, 5, 6, 7, 8])
    func recoveringAtAnotherNodeReplaysEveryMissedMessageOnceInEachOriginsOrder(seed: UInt64) throws {
        var rng = SplitMix(state: seed)
        let wall = ManualWallClock()
        let policy = RecoveryPolicy(maxDisconnection: .seconds(10), roomMessages: 1000, historyBytes: 1 << 20, catchUp: .zero)
        let first = StoreNode("n1", epoch: 1, policy: policy, wall: wall)
        let second = StoreNode("n2", epoch: 2, policy: policy, wall: wall)
        let origins: [UInt32] = [101, 102, 103]
        let orderAtFirst = Self.interleaving(origins: origins, perOrigin: 40, rng: &rng)
        let orderAtSecond = Self.interleaving(origins: origins, perOrigin: 40, rng: &rng)
        let record = first.store.open(room: "r1", session: FakeRecoverableSession())
        first.store.joined(pid: record.pid, username: "carol")
        second.store.merge(try #require(first.store.record(pid: record.pid)), fromOwner: true)
        // The client got the first `had` messages of the first node's order, then that node died.
        let had = Int.random(in: 0...orderAtFirst.count, using: &rng)
        var lastOffset = ""
        for (index, origin) in orderAtFirst.enumerated() {
            let offset = first.deliver(Self.label(origin), from: origin)
            if index < had { lastOffset = offset }
        }
        for origin in orderAtSecond { second.deliver(Self.label(origin), from: origin) }
        second.store.peerLost(node: "n1", epoch: 1)

        let outcome = try #require(second.recover(pid: record.pid, offset: lastOffset))
        let missed = outcome.missedTexts
        #expect(outcome.recoveredRecord?.sid == record.sid, "failed: \(String(describing: outcome.failure)), offset \(lastOffset)")
        let received = orderAtFirst.prefix(had).map(Self.label) + missed
        #expect(received.count == orderAtFirst.count, "had \(had), missed \(missed.count)")
        #expect(Set(received) == Set(orderAtFirst.map(Self.label)))
        for origin in origins {
            let sequences = missed.filter { $0.hasPrefix("\(origin)-") }.map { UInt64($0.split(separator: "-")[1])! }
            #expect(sequences == sequences.sorted())
            if let firstMissed = sequences.first {
                #expect(firstMissed == UInt64(orderAtFirst.prefix(had).filter { $0.origin == origin }.count) + 1)
            }
        }
        // The replayed frames carry the recovering node's offsets: the last one covers everything.
        if case .recovered(_, let frames, _) = outcome, let last = frames.last {
            #expect(RecoveryOffset(parsing: offset(ofFrame: last)) == RecoveryOffset([101: 40, 102: 40, 103: 40]))
        }
    }

    /// The client had messages of a live origin that were still in flight to the recovering
    /// node: it waits for them, then replays only what the client lacked, still exactly once.
    @Test(arguments: [11, 12, 13, 14])
    func messagesInFlightToTheRecoveringNodeAreWaitedForAndNotRepeated(seed: UInt64) throws {
        var rng = SplitMix(state: seed)
        let wall = ManualWallClock()
        let policy = RecoveryPolicy(maxDisconnection: .seconds(10), roomMessages: 1000, historyBytes: 1 << 20, catchUp: .seconds(1))
        let first = StoreNode("n1", epoch: 1, policy: policy, wall: wall)
        let second = StoreNode("n2", epoch: 2, policy: policy, wall: wall)
        let slow = MessageOrigin.originID(epoch: 77)
        second.replication.peer("n77", epoch: 77, up: true)
        let origins: [UInt32] = [101, slow]
        let orderAtFirst = Self.interleaving(origins: origins, perOrigin: 30, rng: &rng)
        let orderAtSecond = Self.interleaving(origins: origins, perOrigin: 30, rng: &rng)
        let record = first.store.open(room: "r1", session: FakeRecoverableSession())
        first.store.joined(pid: record.pid, username: "carol")
        second.store.merge(try #require(first.store.record(pid: record.pid)), fromOwner: true)
        // The client saw everything the first node had; the slow origin's last 10 have not
        // reached the second node yet.
        var lastOffset = ""
        for origin in orderAtFirst { lastOffset = first.deliver(Self.label(origin), from: origin) }
        let arrived = orderAtSecond.filter { $0.origin != slow || $0.sequence <= 20 }
        for origin in arrived { second.deliver(Self.label(origin), from: origin) }
        second.store.peerLost(node: "n1", epoch: 1)

        var outcome: RecoveryOutcome?
        second.store.recover(pid: record.pid, offset: lastOffset, room: "r1", session: FakeRecoverableSession()) { outcome = $0 }
        second.loop.advanceTime(by: .milliseconds(100))
        #expect(outcome == nil)
        for sequence in 21...30 as ClosedRange<UInt64> {
            second.deliver("late \(sequence)", from: MessageOrigin(origin: slow, sequence: sequence))
        }
        second.deliver("new", from: MessageOrigin(origin: 101, sequence: 31))
        second.loop.advanceTime(by: .milliseconds(20))
        #expect(try #require(outcome).missedTexts == ["new"])
    }

    @Test func aSessionMadeMidwayReplaysNothingFromBeforeItsStartWhateverOffsetItForges() throws {
        let wall = ManualWallClock()
        let first = StoreNode("n1", epoch: 1, wall: wall), second = StoreNode("n2", epoch: 2, wall: wall)
        for n in 1...3 as ClosedRange<UInt64> {
            first.deliver("early \(n)", from: MessageOrigin(origin: 7, sequence: n))
            second.deliver("early \(n)", from: MessageOrigin(origin: 7, sequence: n))
        }
        let record = first.store.open(room: "r1", session: FakeRecoverableSession())
        first.store.joined(pid: record.pid, username: "carol")
        #expect(record.start == RecoveryOffset([7: 3]))
        second.store.merge(try #require(first.store.record(pid: record.pid)), fromOwner: true)
        second.deliver("late", from: MessageOrigin(origin: 7, sequence: 4))
        second.store.peerLost(node: "n1", epoch: 1)
        #expect(second.recover(pid: record.pid, offset: "")?.missedTexts == ["late"])
    }

    @Test func recoveringOnTheSameNodeReplaysWhatCameAfterTheOffset() throws {
        let wall = ManualWallClock()
        let node = StoreNode("n1", epoch: 1, wall: wall)
        let record = node.store.open(room: "r1", session: FakeRecoverableSession())
        node.store.joined(pid: record.pid, username: "carol")
        let had = node.deliver("one")
        node.store.detached(pid: record.pid)
        node.deliver("two")
        node.deliver("peer", from: MessageOrigin(origin: 9, sequence: 1))
        let outcome = try #require(node.recover(pid: record.pid, offset: had))
        #expect(outcome.missedTexts == ["two", "peer"])
        #expect(outcome.recoveredRecord?.username == "carol")
        #expect(outcome.recoveredRecord?.state == .live)
        #expect(node.metrics.snapshot.succeeded == 1)
        #expect(node.metrics.snapshot.attempted == 1)
        #expect(node.metrics.snapshot.takenOver == 0)
    }

    @Test func aSessionThatNeverJoinedRecoversWithNoReplay() throws {
        let wall = ManualWallClock()
        let node = StoreNode("n1", epoch: 1, wall: wall)
        let record = node.store.open(room: "r1", session: FakeRecoverableSession())
        node.store.detached(pid: record.pid)
        node.deliver("said while away")
        let outcome = try #require(node.recover(pid: record.pid, offset: nil))
        #expect(outcome.recoveredRecord?.username == nil)
        #expect(outcome.missedTexts.isEmpty)
    }
}
