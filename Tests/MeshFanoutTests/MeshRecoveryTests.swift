import ChatCore
import NIOCore
import NIOEmbedded
import Testing
@testable import MeshFanout

/// The mesh with connection-state recovery on (docs/RECOVERY.md): messages carry their origin
/// to every node, session records follow, and a lost peer's sessions are held.
@Suite struct MeshRecoveryTests {
    func threeNodes() throws -> RecoveryTestMesh {
        try RecoveryTestMesh.connected([RecoveryTestNode("a1", epoch: 101), RecoveryTestNode("a2", epoch: 202),
                                        RecoveryTestNode("a3", epoch: 303)])
    }

    // MARK: Messages

    @Test func aMessagePublishedOnOneNodeReachesEveryNodeWithItsOriginAndTheSameOffset() throws {
        let mesh = try threeNodes()
        let a1 = mesh["a1"]
        a1.mesh.publish(message("r", "hi"))
        try mesh.settle()

        let origin = MessageOrigin(origin: a1.origin, sequence: 1)
        let expected = StampingDelivery.Delivered(room: "r", origin: origin,
                                                  frame: #"42["message",{"text":"hi"},"\#(String(a1.origin, radix: 36)).1"]"#)
        for node in mesh.nodes {
            #expect(node.delivered == [expected], "\(node.name)")
        }
        #expect(a1.store?.localOrigin == a1.origin)
    }

    @Test func theOriginsNodeDeliversItsOwnMessageOnlyOnceNumberedOnTheStoreLoop() throws {
        let mesh = try threeNodes()
        let a2 = mesh["a2"]
        a2.mesh.publish(message("r", "one"))
        a2.mesh.publish(message("r", "two"))
        a2.mesh.publish(message("q", "other room"))
        #expect(a2.delivered.isEmpty, "delivered on the store's loop, not inline in publish")
        try mesh.settle()
        #expect(a2.delivered.map(\.origin) == [MessageOrigin(origin: a2.origin, sequence: 1),
                                               MessageOrigin(origin: a2.origin, sequence: 2),
                                               MessageOrigin(origin: a2.origin, sequence: 1)])
    }

    @Test func everyPeerGetsEveryRoomsMessagesAsPubStampedWhateverItsInterest() throws {
        let mesh = try threeNodes()
        mesh["a3"].mesh.subscribe(room: "watched")
        try mesh.settle()
        mesh.clearSeen()
        mesh["a1"].mesh.publish(message("watched", "x"))
        mesh["a1"].mesh.publish(message("nobody-here", "y"))
        try mesh.settle()

        for peer in ["a2", "a3"] {
            let pubs = mesh.frames("a1", peer).compactMap { frame -> String? in
                guard case .pubStamped(_, let originSequence, let room, _) = frame else { return nil }
                return "\(room) \(originSequence)"
            }
            #expect(pubs == ["watched 1", "nobody-here 1"], "to \(peer)")
            #expect(!mesh.frames("a1", peer).contains { $0.type == .pub })
        }
        #expect(mesh["a2"].delivered.map(\.room) == ["watched", "nobody-here"])
    }

    @Test func eachSendersOrderHoldsOnEveryNodeAndOffsetsNameEveryOrigin() throws {
        let mesh = try threeNodes()
        let a1 = mesh["a1"], a2 = mesh["a2"], a3 = mesh["a3"]
        for index in 1...3 {
            a1.mesh.publish(message("r", "a1-\(index)"))
            a2.mesh.publish(message("r", "a2-\(index)"))
        }
        try mesh.settle()

        for node in mesh.nodes {
            let fromA1 = node.delivered.compactMap { $0.origin?.origin == a1.origin ? $0.origin?.sequence : nil }
            let fromA2 = node.delivered.compactMap { $0.origin?.origin == a2.origin ? $0.origin?.sequence : nil }
            #expect(fromA1 == [1, 2, 3], "\(node.name)")
            #expect(fromA2 == [1, 2, 3], "\(node.name)")
        }
        // After everything, every node's vector for the room is the same: both origins at 3.
        let final = RecoveryOffset([a1.origin: 3, a2.origin: 3]).string
        for node in mesh.nodes {
            #expect(offset(of: node.delivered.last!.frame) == final, "\(node.name)")
        }
        #expect(a3.delivered.count == 6)
    }

    @Test func aPeerThatIsDownGetsWhatItMissedAsPubStampedWhenItsLinkReturns() throws {
        let a1 = RecoveryTestNode("a1", epoch: 11), a2 = RecoveryTestNode("a2", epoch: 22)
        let mesh = try RecoveryTestMesh.connected([a1, a2])
        _ = try mesh.link("a1", "a2").dialerChannel.close().wait()
        try mesh.settle()
        a1.mesh.publish(message("r", "while you were away"))
        try mesh.settle()
        #expect(a2.delivered.isEmpty)

        try mesh.connect(a1, a2)
        #expect(a2.delivered.map(\.origin) == [MessageOrigin(origin: a1.origin, sequence: 1)])
        #expect(a2.delivered.first?.frame.contains("while you were away") == true)
    }

    @Test func aPubStampedLostInFlightIsResentOnTheNextLinkAndDeliveredOnce() throws {
        let a1 = RecoveryTestNode("a1", epoch: 11), a2 = RecoveryTestNode("a2", epoch: 22)
        let mesh = try RecoveryTestMesh.connected([a1, a2])
        a1.mesh.publish(message("r", "in flight"))
        a1.loop.run()
        // The link dies with the frame still in a1's socket buffer.
        let lost = mesh.link("a1", "a2")
        _ = try lost.acceptorChannel.close().wait()
        _ = try lost.dialerChannel.close().wait()
        try mesh.settle()
        #expect(a2.delivered.isEmpty)

        mesh.clearSeen()
        try mesh.connect(a1, a2)
        #expect(mesh.frames("a1", "a2").filter { $0.type == .pubStamped }.count == 1, "resent")
        #expect(a2.delivered.map(\.origin) == [MessageOrigin(origin: a1.origin, sequence: 1)])
    }

    @Test func aPubStampedWhoseLinkSequenceWasSeenIsADuplicateAndNotDelivered() throws {
        let a1 = RecoveryTestNode("a1", epoch: 11), a2 = RecoveryTestNode("a2", epoch: 22)
        let mesh = try RecoveryTestMesh.connected([a1, a2])
        a1.mesh.publish(message("r", "once"))
        try mesh.settle()
        let again = MeshFrame.pubStamped(sequence: 1, originSequence: 1, room: "r", payload: buffer(#"2["message",{"text":"once"}]"#))
        try mesh.link("a1", "a2").acceptorChannel.writeInbound(MeshFrameCodec.encode(again))
        try mesh.settle()
        #expect(a2.delivered.count == 1)
        #expect(mesh.link("a1", "a2").acceptorChannel.isActive)
    }

    /// A gap in a link's numbering (the sender's buffer dropped PUB_STAMPEDs of unknown rooms)
    /// means this node cannot vouch for that origin's history anywhere until its next message.
    @Test func aLinkGapMakesTheStoreRefuseOffsetsItCanNoLongerVouchFor() throws {
        let a1 = RecoveryTestNode("a1", epoch: 11), a2 = RecoveryTestNode("a2", epoch: 22)
        let mesh = try RecoveryTestMesh.connected([a1, a2])
        let session = RecordingSession()
        let record = a2.store!.open(room: "r", session: session)
        a2.store!.joined(pid: record.pid, username: "x")
        a1.mesh.publish(message("r", "one"))
        try mesh.settle()
        let offset = RecoveryOffset([a1.origin: 1]).string

        func recover() -> String {
            var outcome = "none"
            a2.store!.recover(pid: record.pid, offset: offset, room: "r", session: session) { result in
                switch result {
                case .recovered(_, let missed, _): outcome = "recovered, \(missed.count) missed"
                case .failed(let reason): outcome = reason.rawValue
                }
            }
            return outcome
        }
        #expect(recover() == "recovered, 0 missed")

        // Link sequence 3 after 1: PUB_STAMPED 2 never came.
        let skipped = MeshFrame.pubStamped(sequence: 3, originSequence: 1, room: "q", payload: buffer(#"2["message",{}]"#))
        try mesh.link("a1", "a2").acceptorChannel.writeInbound(MeshFrameCodec.encode(skipped))
        try mesh.settle()
        #expect(recover() == "offset_too_old")
    }

    @Test func withRecoveryOffOnlyAnInterestedPeerGetsAPlainPub() throws {
        let mesh = try RecoveryTestMesh.connected([RecoveryTestNode("a1", epoch: 1, recovery: false),
                                                   RecoveryTestNode("a2", epoch: 2, recovery: false),
                                                   RecoveryTestNode("a3", epoch: 3, recovery: false)])
        mesh["a3"].mesh.subscribe(room: "r")
        try mesh.settle()
        mesh.clearSeen()
        mesh["a1"].mesh.publish(message("r", "hi"))
        try mesh.settle()
        #expect(mesh.frames("a1", "a2").isEmpty)
        guard case .pub(1, "r", _) = mesh.frames("a1", "a3").first else {
            Issue.record("no PUB to a3: \(mesh.frames("a1", "a3"))"); return
        }
        #expect(mesh["a3"].plain?.delivered == [delivered("r", "hi")])
    }

    // MARK: Mixed clusters (a config change rolling through)

    @Test func aPlainPubReachingARecoveryNodeIsNumberedAsThatNodesOwn() throws {
        let off = RecoveryTestNode("a1", epoch: 1, recovery: false), on = RecoveryTestNode("a2", epoch: 2)
        let mesh = try RecoveryTestMesh.connected([off, on])
        on.mesh.subscribe(room: "r")
        try mesh.settle()
        off.mesh.publish(message("r", "from the old config"))
        off.mesh.publish(message("r", "again"))
        try mesh.settle()
        #expect(on.delivered.map(\.origin) == [MessageOrigin(origin: on.origin, sequence: 1),
                                               MessageOrigin(origin: on.origin, sequence: 2)])
    }

    @Test func aPubStampedReachingARecoveryOffNodeIsDeliveredWithoutAnOffset() throws {
        let on = RecoveryTestNode("a1", epoch: 1), off = RecoveryTestNode("a2", epoch: 2, recovery: false)
        let mesh = try RecoveryTestMesh.connected([on, off])
        on.mesh.publish(message("r", "hi"))
        try mesh.settle()
        #expect(off.plain?.delivered == [delivered("r", "hi")])
    }

    @Test func sessionRecordsReachingARecoveryOffNodeAreIgnored() throws {
        let on = RecoveryTestNode("a1", epoch: 1), off = RecoveryTestNode("a2", epoch: 2, recovery: false)
        let mesh = try RecoveryTestMesh.connected([on, off])
        _ = on.store!.open(room: "r", session: RecordingSession())
        try mesh.settle()
        #expect(mesh.frames("a1", "a2").contains { $0.type == .session })
        #expect(mesh.link("a1", "a2").acceptorChannel.isActive)
    }

    // MARK: Sessions

    @Test func aSessionMadeOnOneNodeAppearsOnEveryPeer() throws {
        let mesh = try threeNodes()
        let a1 = mesh["a1"]
        let record = a1.store!.open(room: "r", session: RecordingSession())
        a1.store!.joined(pid: record.pid, username: "ann")
        try mesh.settle()

        let current = a1.store!.record(pid: record.pid)!
        #expect(current.username == "ann")
        for peer in ["a2", "a3"] {
            #expect(mesh[peer].store!.record(pid: record.pid) == current, "on \(peer)")
        }
        #expect(mesh.frames("a1", "a2").filter { $0.type == .session }.count == 2)
    }

    @Test func recordsKnownBeforeALinkComesUpAreSentRightAfterTheSnapshot() throws {
        let a1 = RecoveryTestNode("a1", epoch: 11), a2 = RecoveryTestNode("a2", epoch: 22)
        a1.loop.run()
        let record = a1.store!.open(room: "r", session: RecordingSession())
        let mesh = RecoveryTestMesh([a1, a2])
        try mesh.connect(a1, a2)

        let types = mesh.frames("a1", "a2").map(\.type)
        #expect(types.firstIndex(of: .session) == types.firstIndex(of: .snapshot).map { $0 + 1 })
        #expect(a2.store!.record(pid: record.pid) == record)
    }

    @Test func aPeersSessionsAreHeldWhenItsLinkDrops() throws {
        let mesh = try threeNodes()
        let record = mesh["a1"].store!.open(room: "r", session: RecordingSession())
        try mesh.settle()
        #expect(mesh["a2"].store!.record(pid: record.pid)?.state == .live)

        _ = try mesh.link("a1", "a2").acceptorChannel.close().wait()
        try mesh.settle()
        #expect(mesh["a2"].store!.record(pid: record.pid)?.state == .held(sinceMillis: 1_000_000))
        // a3 still has its link to a1: there the session stays live.
        #expect(mesh["a3"].store!.record(pid: record.pid)?.state == .live)
    }

    @Test func aPeersSessionsAreLiveAgainWhenTheLinkToTheSameProcessReturns() throws {
        let a1 = RecoveryTestNode("a1", epoch: 11), a2 = RecoveryTestNode("a2", epoch: 22)
        let mesh = try RecoveryTestMesh.connected([a1, a2])
        let record = a1.store!.open(room: "r", session: RecordingSession())
        try mesh.settle()
        let old = mesh.link("a1", "a2")
        _ = try old.dialerChannel.close().wait()
        _ = try old.acceptorChannel.close().wait()
        try mesh.settle()
        #expect(a2.store!.record(pid: record.pid)?.state == .held(sinceMillis: 1_000_000))

        try mesh.connect(a1, a2)  // a blip: the same a1 process, whose record says live
        #expect(a2.store!.record(pid: record.pid)?.state == .live)
    }

    @Test func aPeersGoodbyeHoldsItsSessions() throws {
        let a1 = RecoveryTestNode("a1", epoch: 11), a2 = RecoveryTestNode("a2", epoch: 22)
        let mesh = try RecoveryTestMesh.connected([a1, a2])
        let record = a1.store!.open(room: "r", session: RecordingSession())
        try mesh.settle()
        _ = a1.mesh.stop()
        try mesh.settle()
        #expect(mesh.frames("a1", "a2").last == .goodbye("node a1 is shutting down"))
        #expect(a2.store!.record(pid: record.pid)?.state == .held(sinceMillis: 1_000_000))
    }

    @Test func aLinkReplacedByOneToARestartedPeerHoldsTheOldProcessesSessions() throws {
        let a1 = RecoveryTestNode("a1", epoch: 11), a2 = RecoveryTestNode("a2", epoch: 22)
        let mesh = try RecoveryTestMesh.connected([a1, a2])
        let record = a1.store!.open(room: "r", session: RecordingSession())
        try mesh.settle()

        // a1 restarts (new epoch) and dials a2 while a2 still believes in the old link.
        let restarted = RecoveryTestNode("a1", epoch: 12)
        let fresh = RecoveryTestMesh([restarted, a2])
        try fresh.connect(restarted, a2)
        #expect(a2.mesh.peerStatus().up == ["a1"])
        #expect(a2.store!.record(pid: record.pid)?.state == .held(sinceMillis: 1_000_000))
        #expect(a2.mesh.liveOrigins == [restarted.origin])
    }

    @Test func liveNamesAndOriginsFollowTheLinks() throws {
        let mesh = try threeNodes()
        let a1 = mesh["a1"]
        #expect(a1.mesh.liveNodeNames == ["a2", "a3"])
        #expect(a1.mesh.liveOrigins == [mesh["a2"].origin, mesh["a3"].origin])
        _ = try mesh.link("a1", "a3").dialerChannel.close().wait()
        try mesh.settle()
        #expect(a1.mesh.liveNodeNames == ["a2"])
        #expect(a1.mesh.liveOrigins == [mesh["a2"].origin])
    }

    @Test func theMeshBecomesTheStoresReplicationWhenItStarts() throws {
        let a1 = RecoveryTestNode("a1", epoch: 11)
        a1.loop.run()
        #expect(a1.store!.replication === a1.mesh)
    }

    @Test func aGivenEpochIsTheMeshsEpochAndZeroPicksARandomOne() {
        #expect(RecoveryTestNode("a1", epoch: 0xABCD).mesh.epoch == 0xABCD)
        #expect(RecoveryTestNode("a1", epoch: 0).mesh.epoch != 0)
    }

    // MARK: Bad input

    @Test func aSessionFrameWithAMalformedStartClosesOnlyThatLink() throws {
        let mesh = try threeNodes()
        let a2 = mesh["a2"]
        var bad = hex("0C 0001 70 0001 73 0001 72 00 0002 6131 0000000000000065 0000000000000001 00 0000000000000000")
        bad += hex("0003") + Array("1.0".utf8) // sequence 0 is no offset
        let link = mesh.link("a1", "a2")
        try link.acceptorChannel.writeInbound(buffer(hex(String(format: "%08X", bad.count)) + bad))
        try mesh.settle()
        #expect(mesh.frames("a2", "a1").last == .goodbye("bad frame: session frame: malformed start offset"))
        #expect(!link.acceptorChannel.isActive)
        #expect(a2.store!.record(pid: "p") == nil)
        #expect(a2.mesh.liveNodeNames == ["a3"])
    }

    @Test func aTruncatedPubStampedClosesOnlyThatLink() throws {
        let mesh = try threeNodes()
        let link = mesh.link("a1", "a3")
        try link.acceptorChannel.writeInbound(buffer(hex("00000009 0B 0000000000000001")))
        try mesh.settle()
        #expect(mesh.frames("a3", "a1").last == .goodbye("bad frame: pubStamped frame is truncated"))
        #expect(mesh["a3"].mesh.liveNodeNames == ["a2"])
        #expect(mesh["a3"].delivered.isEmpty)
    }
}
