import ClusterConfig
import Testing
@testable import MeshFanout

/// `chatmesh_mesh_frames_total` / `chatmesh_mesh_bytes_total` count every frame after the
/// handshake, both ways, including what a link writes as it comes up (SNAPSHOT, SUBs) and,
/// on the dialer, what arrives in the same chunk as the acceptor's last handshake frame.
@Suite struct LinkUpMetricsTests {
    @Test func countersIncludeEverythingSentAndReadAtLinkUp() throws {
        var settings = MeshSettings()
        settings.maxFrame = 512 // so the room tables go as a SNAPSHOT and SUBs
        let a1 = LinkUpTestNode("a1", mesh: settings), a2 = LinkUpTestNode("a2", mesh: settings)
        for index in 0..<60 { a1.mesh.subscribe(room: "a1-room-\(index)") }
        for index in 0..<50 { a2.mesh.subscribe(room: "a2-room-\(index)") }
        a1.loop.run()
        a2.loop.run()

        let dialed = try a1.link(role: .dialer(expectedPeer: "a2"))
        let accepted = try a2.link(role: .acceptor)
        let seen = try shuttle((a1, dialed), (a2, accepted))
        #expect(a1.mesh.peerStatus().up == ["a2"])
        let sent1 = afterHandshake(seen.aToB), sent2 = afterHandshake(seen.bToA)
        #expect(sent1.count > 1 && sent2.count > 1)
        // The acceptor's SNAPSHOT went out in the same chunk as its AUTH.
        #expect(seen.bToA.firstIndex { if case .auth = $0.frame { true } else { false } } == 1)

        for (node, peer, out, into) in [(a1, "a2", sent1, sent2), (a2, "a1", sent2, sent1)] {
            #expect(node.counter("chatmesh_mesh_frames_total", peer: peer, "out") == Int64(out.count))
            #expect(node.counter("chatmesh_mesh_bytes_total", peer: peer, "out") == Int64(out.map(\.bytes).reduce(0, +)))
            #expect(node.counter("chatmesh_mesh_frames_total", peer: peer, "in") == Int64(into.count))
            #expect(node.counter("chatmesh_mesh_bytes_total", peer: peer, "in") == Int64(into.map(\.bytes).reduce(0, +)))
        }

        // And after link-up, as before.
        a2.mesh.publish(message("a1-room-3", "counted"))
        let later = try shuttle((a1, dialed), (a2, accepted))
        #expect(later.bToA.count == 1)
        #expect(a2.counter("chatmesh_mesh_frames_total", peer: "a1", "out") == Int64(sent2.count + 1))
        #expect(a1.counter("chatmesh_mesh_bytes_total", peer: "a2", "in")
            == Int64((sent2 + later.bToA).map(\.bytes).reduce(0, +)))
    }
}
