import ChatCore
import ClusterConfig
import NIOCore
import NIOEmbedded
import Testing
@testable import MeshFanout

/// `MeshFanout.apply`, a reload of cluster.conf: on real loopback links, a node added to one
/// node's config is dialed and carries messages, a removed one is said GOODBYE to while the rest
/// keep exchanging, and a node not yet in a peer's config is refused and gets in after that
/// peer's reload. In memory: a new ping_interval takes effect, a removed peer's sessions are
/// held, and a peer removed and added back is not fed PUBs it would drop as duplicates.
@Suite(.serialized) struct MeshReloadTests {
    // MARK: Real links

    @Test func aNodeAddedByAReloadIsDialedAndMessagesFlowToIt() throws {
        let cluster = try ReloadCluster()
        let a1 = try cluster.node("a1", knowing: ["a1", "a2"])
        let a2 = try cluster.node("a2", knowing: ReloadCluster.names)
        let a3 = try cluster.node("a3", knowing: ReloadCluster.names)
        defer { for node in [a1, a2, a3] { try? node.stop() } }
        #expect(eventuallyTrue { a1.up == ["a2"] && a2.up == ["a1", "a3"] && a3.up == ["a2"] })
        #expect(a1.mesh.peerStatus().down.isEmpty, "a3 is not a1's peer yet")

        let report = try a1.apply(cluster.config(ReloadCluster.names))
        #expect(report.added == ["a3"])
        #expect(report.removed.isEmpty && report.readdressed.isEmpty && report.settingsChanged.isEmpty)
        #expect(report.description == "mesh: peers added a3")
        #expect(eventuallyTrue { a1.up == ["a2", "a3"] && a3.up == ["a1", "a2"] })
        // The link that was there is the one that stays: a1-a2 came up once.
        #expect(a1.log.lines("mesh link up").filter { $0["peer"] == "a2" }.count == 1)

        a3.mesh.subscribe(room: "r")
        #expect(try eventuallyTrue { try a1.knowsInterest(of: "a3", in: "r") })
        a1.publish("r", "hello a3")
        #expect(try eventuallyTrue { try a3.delivered == [delivered("r", "hello a3")] })
    }

    @Test func aNodeRemovedByAReloadGetsAGoodbyeAndTheOthersKeepExchanging() throws {
        let cluster = try ReloadCluster()
        let a1 = try cluster.node("a1", knowing: ReloadCluster.names)
        let a2 = try cluster.node("a2", knowing: ReloadCluster.names)
        let a3 = try cluster.node("a3", knowing: ReloadCluster.names)
        defer { for node in [a1, a2, a3] { try? node.stop() } }
        #expect(eventuallyTrue { a1.up == ["a2", "a3"] && a2.up == ["a1", "a3"] && a3.up == ["a1", "a2"] })
        for node in [a1, a2, a3] { node.mesh.subscribe(room: "r") }
        #expect(try eventuallyTrue { try a1.knowsInterest(of: "a2", in: "r") && a2.knowsInterest(of: "a1", in: "r") })

        let report = try a1.apply(cluster.config(["a1", "a2"]))
        #expect(report.removed == ["a3"])
        #expect(report.description == "mesh: peers removed a3")
        #expect(a1.mesh.peerStatus().up == ["a2"] && a1.mesh.peerStatus().down.isEmpty)
        #expect(a1.mesh.health.statusLine == "mesh peers up 1/1")
        #expect(eventuallyTrue {
            a3.log.lines("mesh peer said goodbye").contains { $0["peer"] == "a1" && $0["reason"] == "removed from cluster.conf" }
        })
        #expect(eventuallyTrue { a3.up == ["a2"] })

        // a1 and a2, a2 and a3 go on; a1 sends a3 nothing more. (A node's own publish is
        // delivered to its members by the node itself, so it is among what it delivered.)
        a1.publish("r", "from a1")
        a2.publish("r", "from a2")
        let both = [delivered("r", "from a1"), delivered("r", "from a2")]
        #expect(try eventuallyTrue { try a1.delivered.sorted() == both && a2.delivered.sorted() == both })
        #expect(try eventuallyTrue { try a3.delivered == [delivered("r", "from a2")] })
        // The a1-a2 link was not touched by the reload.
        #expect(a1.log.lines("mesh link up").filter { $0["peer"] == "a2" }.count == 1)
        #expect(a1.log.lines("mesh link down").filter { $0["peer"] == "a2" }.isEmpty)
    }

    @Test func aNodeUnknownToItsPeerIsRefusedUntilThePeerReloads() throws {
        let cluster = try ReloadCluster()
        // a1 has the new file and dials a3; a3 still runs the old one, without a1.
        let a1 = try cluster.node("a1", knowing: ReloadCluster.names)
        let a2 = try cluster.node("a2", knowing: ReloadCluster.names)
        let a3 = try cluster.node("a3", knowing: ["a2", "a3"])
        defer { for node in [a1, a2, a3] { try? node.stop() } }

        let refusal = "unknown node 'a1': not in this node's cluster.conf"
        #expect(eventuallyTrue {
            a3.log.lines("mesh link refused").filter { $0["reject"] == "unknown_peer" && $0["reason"] == refusal }.count >= 2
        }, "a3 refuses a1, and a1 tries again")
        #expect(eventuallyTrue {
            a1.log.lines("mesh link refused").contains {
                $0["reject"] == "peer_refused" && $0["peer"] == "a3" && $0["reason"] == "refused by the peer: \(refusal)"
            }
        })
        #expect(a1.up == ["a2"] && a3.up == ["a2"])

        let report = try a3.apply(cluster.config(ReloadCluster.names))
        #expect(report.added == ["a1"])
        #expect(eventuallyTrue { a1.up == ["a2", "a3"] && a3.up == ["a1", "a2"] })
        a3.mesh.subscribe(room: "r")
        #expect(try eventuallyTrue { try a1.knowsInterest(of: "a3", in: "r") })
        a1.publish("r", "let in")
        #expect(try eventuallyTrue { try a3.delivered == [delivered("r", "let in")] })
    }

    @Test func aPeerWhoseAddressChangedIsRedialedThere() throws {
        let cluster = try ReloadCluster()
        // a1 first believes a2 listens where a3 does: a3 answers, a node a1 does not know.
        var wrong = cluster.config(["a1", "a2"])
        wrong.nodes[1].mesh = HostPort(host: "127.0.0.1", port: cluster.ports["a3"]!)
        let a1 = try ReloadNode("a1", config: wrong, socket: cluster.sockets["a1"]!)
        let a2 = try cluster.node("a2", knowing: ["a1", "a2"])
        let a3 = try cluster.node("a3", knowing: ReloadCluster.names)
        defer { for node in [a1, a2, a3] { try? node.stop() } }
        #expect(eventuallyTrue {
            a1.log.lines("mesh link refused").contains { $0["peer"] == "a2" && $0["reason"] == MeshHandshake.unknownPeer("a3") }
        })
        #expect(a1.up.isEmpty)

        let report = try a1.apply(cluster.config(["a1", "a2"]))
        #expect(report.readdressed == [MeshReloadReport.Readdressed(
            peer: "a2", from: "127.0.0.1:\(cluster.ports["a3"]!)", to: "127.0.0.1:\(cluster.ports["a2"]!)", redialed: true)])
        #expect(eventuallyTrue { a1.up == ["a2"] && a2.up == ["a1"] })
    }

    // MARK: In memory

    @Test func aNewPingIntervalTakesEffectAtOnce() throws {
        let a1 = TestNode("a1"), a2 = TestNode("a2")
        let dialed = try a1.link(role: .dialer(expectedPeer: "a2"))
        let accepted = try a2.link(role: .acceptor)
        try pump((a1, dialed), (a2, accepted))
        // As start() does, without a listener.
        a1.mesh.started = true
        a1.mesh.startHeartbeat()
        #expect(TestNode.config.mesh.pingInterval == .seconds(1))
        a1.loop.advanceTime(by: .milliseconds(500))
        #expect(try writtenFrames(dialed).isEmpty)

        // 400 ms: silence is judged by the real clock (two intervals), so the interval leaves
        // this test's real time ample room.
        var faster = TestNode.config
        faster.mesh.pingInterval = .milliseconds(400)
        let applied = a1.mesh.apply(faster)
        a1.loop.run()
        let report = try applied.wait()
        #expect(report.settingsChanged == ["ping_interval 1000 -> 400"])
        #expect(report.added.isEmpty && report.removed.isEmpty)

        // The new beat counts from the reload (at 500 ms): 900, 1300, 1700 …
        a1.loop.advanceTime(by: .milliseconds(399))
        #expect(try writtenFrames(dialed).isEmpty)
        a1.loop.advanceTime(by: .milliseconds(1))
        #expect(try writtenFrames(dialed).map(\.type) == [.ping])
        // At 1000 ms, where the old beat was due, nothing: it is gone.
        a1.loop.advanceTime(by: .milliseconds(100))
        #expect(try writtenFrames(dialed).isEmpty)
        a1.loop.advanceTime(by: .milliseconds(800))
        #expect(try writtenFrames(dialed).map(\.type) == [.ping, .ping])
    }

    @Test func liveMeshSettingsReachEveryPeerAndMaxFrameOnlyNewLinks() throws {
        let a1 = TestNode("a1"), a2 = TestNode("a2")
        let dialed = try a1.link(role: .dialer(expectedPeer: "a2"))
        let accepted = try a2.link(role: .acceptor)
        try pump((a1, dialed), (a2, accepted))
        var changed = TestNode.config
        changed.mesh.bufferMessages = 2
        changed.mesh.bufferTime = .milliseconds(750)
        changed.mesh.maxFrame = 100_000
        changed.mesh.reconnectMax = .milliseconds(500)
        let applied = a1.mesh.apply(changed)
        a1.loop.run()
        let report = try applied.wait()
        #expect(report.settingsChanged == ["buffer_messages 10000 -> 2", "buffer_ms 5000 -> 750",
                                           "max_frame 4194304 -> 100000", "reconnect_max 2000 -> 500"])
        #expect(report.notes == ["max_frame applies to new links; 1 open link(s) keep 4194304"])
        let peer = try #require(a1.mesh.peers["a2"])
        #expect(peer.outbox.maxMessages == 2)
        #expect(peer.backoff.capMs == 500)
        #expect(a1.mesh.settings == changed.mesh)

        // The outbox bound holds from now: three PUBs for a down a2 keep the last two.
        a2.mesh.subscribe(room: "r")
        try pump((a1, dialed), (a2, accepted))
        _ = try dialed.close().wait()
        a1.loop.run()
        for text in ["one", "two", "three"] { a1.mesh.publish(message("r", text)) }
        a1.loop.run()
        #expect(peer.outbox.entries.map(\.sequence) == [2, 3])
    }

    @Test func aRemovedPeersLinkClosesWithGoodbyeAndItsSessionsAreHeld() throws {
        let a1 = RecoveryTestNode("a1", epoch: 11), a2 = RecoveryTestNode("a2", epoch: 22), a3 = RecoveryTestNode("a3", epoch: 33)
        let mesh = try RecoveryTestMesh.connected([a1, a2, a3])
        let record = a3.store!.open(room: "r", session: RecordingSession())
        try mesh.settle()
        #expect(a1.store!.record(pid: record.pid)?.state == .live)
        mesh.clearSeen()

        var without = RecoveryTestNode.config
        without.nodes.removeAll { $0.name == "a3" }
        let applied = a1.mesh.apply(without)
        try mesh.settle()
        #expect(try applied.wait().removed == ["a3"])
        #expect(mesh.frames("a1", "a3") == [.goodbye("removed from cluster.conf")])
        #expect(!mesh.link("a1", "a3").dialerChannel.isActive)
        #expect(a1.store!.record(pid: record.pid)?.state == .held(sinceMillis: 1_000_000))
        #expect(a2.store!.record(pid: record.pid)?.state == .live)
        #expect(a1.mesh.peers["a3"] == nil)
        #expect(a1.mesh.peerStatus().up == ["a2"] && a1.mesh.peerStatus().down.isEmpty)
        #expect(a1.mesh.liveNodeNames == ["a2"])
        // A sid of a3's is no longer one to relay: a1 answers it as unknown.
        #expect(!a1.mesh.isPeerSession(sid: NodeTag.of(nodeName: "a3") + String(repeating: "x", count: 16)))
        #expect(a1.mesh.isPeerSession(sid: NodeTag.of(nodeName: "a2") + String(repeating: "x", count: 16)))

        // a1-a2 saw nothing of it and still carries messages.
        #expect(!mesh.frames("a1", "a2").contains { $0.type == .goodbye })
        a1.mesh.publish(message("r", "still here"))
        try mesh.settle()
        #expect(a2.delivered.map(\.room) == ["r"])
        #expect(a3.delivered.isEmpty)
    }

    @Test func aPeerRemovedAndAddedBackGetsNewPubsNotTakenAsDuplicates() throws {
        let a1 = TestNode("a1"), a2 = TestNode("a2")
        var dialed = try a1.link(role: .dialer(expectedPeer: "a2"))
        var accepted = try a2.link(role: .acceptor)
        try pump((a1, dialed), (a2, accepted))
        a2.mesh.subscribe(room: "r")
        try pump((a1, dialed), (a2, accepted))
        for text in ["one", "two", "three"] { a1.mesh.publish(message("r", text)) }
        try pump((a1, dialed), (a2, accepted))
        #expect(a2.delivery.delivered.count == 3)

        var alone = TestNode.config
        alone.nodes.removeAll { $0.name == "a2" }
        _ = a1.mesh.apply(alone)
        let seen = try pump((a1, dialed), (a2, accepted))
        #expect(seen.aToB == [.goodbye("removed from cluster.conf")])
        _ = a1.mesh.apply(TestNode.config)
        a1.loop.run()

        // a2 kept a1's process and its numbers (3 delivered); a1 starts a2 afresh.
        dialed = try a1.link(role: .dialer(expectedPeer: "a2"))
        accepted = try a2.link(role: .acceptor)
        try pump((a1, dialed), (a2, accepted))
        #expect(a1.mesh.peerStatus().up == ["a2"])
        a1.mesh.publish(message("r", "four"))
        try pump((a1, dialed), (a2, accepted))
        #expect(a2.delivery.delivered.last == delivered("r", "four"))
    }
}
