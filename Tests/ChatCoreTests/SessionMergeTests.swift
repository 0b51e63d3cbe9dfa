import NIOCore
import Testing
@testable import ChatCore

/// How two copies of one session record are decided between, the same way on every node.
@Suite("Session record merge")
struct SessionMergeTests {
    let wall = ManualWallClock()

    func record(claims: UInt64, changes: UInt64, owner: String, state: SessionRecord.State = .live, username: String? = nil) -> SessionRecord {
        SessionRecord(pid: "p", sid: "s", room: "r1", username: username, owner: owner, ownerEpoch: 1,
                      version: claims << 32 | changes, state: state)
    }

    @Test func aClaimOutranksAnyNumberOfChanges() {
        let changed = record(claims: 0, changes: 900, owner: "n1", username: "old")
        let claimed = record(claims: 1, changes: 0, owner: "n2")
        #expect(SessionDirectory.prefers(claimed, over: changed, fromOwner: false))
        #expect(!SessionDirectory.prefers(changed, over: claimed, fromOwner: true))
    }

    @Test func moreChangesWinUnderTheSameClaim() {
        let older = record(claims: 1, changes: 1, owner: "n2")
        let newer = record(claims: 1, changes: 2, owner: "n2", state: .held(sinceMillis: 5))
        #expect(SessionDirectory.prefers(newer, over: older, fromOwner: false))
        #expect(!SessionDirectory.prefers(older, over: newer, fromOwner: true))
    }

    @Test func concurrentClaimsGoToTheLowerNodeNameOnEveryNode() {
        let byB = record(claims: 2, changes: 0, owner: "b")
        let byC = record(claims: 2, changes: 5, owner: "c")
        #expect(SessionDirectory.prefers(byB, over: byC, fromOwner: false))
        #expect(!SessionDirectory.prefers(byC, over: byB, fromOwner: true))
        // Whatever order they arrive in, two stores end with b's.
        let first = StoreNode("x", epoch: 1, wall: wall), second = StoreNode("y", epoch: 2, wall: wall)
        first.store.merge(byB, fromOwner: true); first.store.merge(byC, fromOwner: true)
        second.store.merge(byC, fromOwner: true); second.store.merge(byB, fromOwner: true)
        #expect(first.store.record(pid: "p") == byB)
        #expect(second.store.record(pid: "p") == byB)
    }

    @Test func forAnEqualVersionTheOwnersWordWins() {
        let local = record(claims: 0, changes: 3, owner: "n1", state: .held(sinceMillis: 100))
        let owners = record(claims: 0, changes: 3, owner: "n1", state: .held(sinceMillis: 90))
        #expect(SessionDirectory.prefers(owners, over: local, fromOwner: true))
        #expect(!SessionDirectory.prefers(owners, over: local, fromOwner: false))
        #expect(!SessionDirectory.prefers(local, over: local, fromOwner: true))
    }

    @Test func aTombstoneIsNotBroughtBackByALateCopyOfWhatCameBefore() {
        let node = StoreNode("n2", epoch: 2, wall: wall)
        let ended = record(claims: 1, changes: 4, owner: "n1", state: .ended(atMillis: wall.now))
        node.store.merge(ended, fromOwner: true)
        node.store.merge(record(claims: 1, changes: 3, owner: "n1", username: "late"), fromOwner: true)
        node.store.merge(record(claims: 0, changes: 9, owner: "n0", username: "older claim"), fromOwner: true)
        node.store.merge(record(claims: 1, changes: 7, owner: "n3", username: "concurrent claim, higher name"), fromOwner: true)
        #expect(node.store.record(pid: "p") == ended)
        #expect(node.recover(pid: "p", offset: nil)?.failure == .ended)
    }

    /// An end by the old owner and a recovery elsewhere at the same moment: the claim wins on
    /// every node, whichever arrives first (a tombstone that always won would split the nodes).
    @Test func aConcurrentClaimOutranksTheOldOwnersEndOnEveryNode() {
        let ended = record(claims: 0, changes: 4, owner: "n1", state: .ended(atMillis: wall.now))
        let claimed = record(claims: 1, changes: 0, owner: "n2")
        let first = StoreNode("x", epoch: 8, wall: wall), second = StoreNode("y", epoch: 9, wall: wall)
        first.store.merge(ended, fromOwner: true); first.store.merge(claimed, fromOwner: true)
        second.store.merge(claimed, fromOwner: true); second.store.merge(ended, fromOwner: true)
        #expect(first.store.record(pid: "p") == claimed)
        #expect(second.store.record(pid: "p") == claimed)
    }

    /// Whatever order the copies of a record reach two nodes in, they keep the same one.
    @Test(arguments: 1...20)
    func copiesArrivingInAnyOrderConverge(seed: UInt64) {
        var rng = CrossNodeReplayTests.SplitMix(state: seed)
        // Distinct (claims, owner, changes) per copy, as the nodes make them.
        var seen: Set<String> = []
        var copies: [SessionRecord] = []
        while copies.count < 12 {
            let claims = UInt64.random(in: 0...3, using: &rng), changes = UInt64.random(in: 0...5, using: &rng)
            let owner = ["n1", "n2", "n3"].randomElement(using: &rng)!
            guard seen.insert("\(claims)/\(owner)/\(changes)").inserted else { continue }
            let states: [SessionRecord.State] = [.live, .held(sinceMillis: wall.now), .ended(atMillis: wall.now)]
            copies.append(record(claims: claims, changes: changes, owner: owner, state: states.randomElement(using: &rng)!))
        }
        let first = StoreNode("x", epoch: 8, wall: wall), second = StoreNode("y", epoch: 9, wall: wall)
        for copy in copies.shuffled(using: &rng) { first.store.merge(copy, fromOwner: Bool.random(using: &rng)) }
        for copy in copies.shuffled(using: &rng) { second.store.merge(copy, fromOwner: Bool.random(using: &rng)) }
        #expect(first.store.record(pid: "p") == second.store.record(pid: "p"))
        let best = copies.max { a, b in SessionDirectory.prefers(b, over: a, fromOwner: false) }
        #expect(first.store.record(pid: "p") == best)
    }

    @Test func aTombstonePastItsTimeIsNotTakenIn() {
        let node = StoreNode("n2", epoch: 2, wall: wall)
        node.store.merge(record(claims: 0, changes: 4, owner: "n1", state: .ended(atMillis: wall.now - 10_001)), fromOwner: true)
        #expect(node.store.allRecords.isEmpty)
    }

    @Test func mergingDoesNotReplicateOrMarkLocalChanges() {
        let node = StoreNode("n2", epoch: 2, wall: wall)
        let incoming = record(claims: 0, changes: 1, owner: "n1", username: "a")
        node.store.merge(incoming, fromOwner: true)
        #expect(node.replication.replicated.isEmpty)
        #expect(node.store.record(pid: "p") == incoming)
    }

    @Test func localChangesBumpTheVersionAndAreReplicated() throws {
        let node = StoreNode("n1", epoch: 1, wall: wall)
        let opened = node.store.open(room: "r1", session: FakeRecoverableSession())
        node.store.joined(pid: opened.pid, username: "alice")
        node.store.detached(pid: opened.pid)
        node.store.ended(pid: opened.pid)
        let versions = node.replication.replicated.map(\.version)
        #expect(versions == [1, 2, 3, 4])
        #expect(node.replication.replicated.map(\.owner) == ["n1", "n1", "n1", "n1"])
        let last = try #require(node.replication.replicated.last)
        #expect(last.username == "alice")
        #expect(last.isEnded)
        #expect(opened.pid.utf8.count == 20 && opened.sid.utf8.count == 20 && opened.pid != opened.sid)
    }

    @Test func aLostPeersLiveSessionsAreHeldLocallyOnly() {
        let node = StoreNode("n2", epoch: 2, wall: wall)
        node.store.merge(record(claims: 0, changes: 2, owner: "n1", username: "a"), fromOwner: true)
        var otherEpoch = record(claims: 0, changes: 2, owner: "n1")
        otherEpoch.pid = "q"
        otherEpoch.ownerEpoch = 7
        node.store.merge(otherEpoch, fromOwner: true)
        node.store.peerLost(node: "n1", epoch: 1)
        #expect(node.store.record(pid: "p")?.state == .held(sinceMillis: wall.now))
        #expect(node.store.record(pid: "p")?.version == 2)
        #expect(node.store.record(pid: "q")?.state == .live)
        #expect(node.replication.replicated.isEmpty)
    }
}
