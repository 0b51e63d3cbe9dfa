import ClusterConfig
import Logging
import NIOCore
import NIOEmbedded
import Testing
@testable import MeshFanout

/// A node does not dial all its peers at the same instant: at start, and when a reload adds
/// peers, each first dial waits a random part of a window of 10 ms per peer, at most 1 s. When
/// every node of a cluster starts (or reloads) at once, each would otherwise take N − 1
/// handshakes in the same few milliseconds (docs/SCALE.md, the reconnect storm). The dials are
/// only scheduled here (an embedded loop cannot connect): the test reads when each is due.
@Suite struct FirstDialSpreadTests {
    /// a01 … a`count`, zero-padded so a01 dials every other node.
    static func config(_ count: Int) -> ClusterConfig {
        ClusterConfig(secret: TestNode.secret, nodes: (1...count).map { i in
            NodeEntry(name: name(i), listen: HostPort(host: "127.0.0.1", port: 8000 + i),
                      mesh: HostPort(host: "127.0.0.1", port: 9000 + i))
        })
    }

    static func name(_ i: Int) -> String { i < 10 ? "a0\(i)" : "a\(i)" }

    func node(_ name: String, of config: ClusterConfig) -> (EmbeddedEventLoop, MeshFanout) {
        let loop = EmbeddedEventLoop()
        let mesh = MeshFanout(config: config, localNode: config.node(named: name)!, eventLoop: loop,
                              logger: Logger(label: "mesh-test", factory: { _ in SwiftLogNoOpLogHandler() }))
        mesh.start(delivery: RecordingDelivery())
        return (loop, mesh)
    }

    /// Cancels the pending dials, so none fires on the embedded loop. (Not by running the loop:
    /// a dial drawn at 0 ms is due at once, and an embedded loop cannot connect.)
    func stop(_ mesh: MeshFanout) {
        for peer in mesh.peers.values { peer.redialTimer?.cancel() }
    }

    /// Milliseconds from now until each peer's first dial; nil for a peer with none scheduled.
    func dueIn(_ loop: EmbeddedEventLoop, _ mesh: MeshFanout, _ names: [String]) -> [Int?] {
        names.map { name in mesh.peers[name]?.nextDialAt.map { Int(($0 - loop.now).nanoseconds / 1_000_000) } }
    }

    @Test func firstDialsAtStartSpreadOverTenMillisecondsPerPeer() throws {
        let (loop, mesh) = node("a01", of: Self.config(50))
        mesh.dialAtStart()
        let peers = (2...50).map(Self.name)
        let due = dueIn(loop, mesh, peers).compactMap { $0 }
        #expect(due.count == 49, "every peer a01 dials has its first dial scheduled")
        #expect(peers.allSatisfy { mesh.peers[$0]?.dialing == false }, "no dial goes out at once")
        // 49 peers: a window of 490 ms.
        #expect(due.allSatisfy { (0...490).contains($0) }, "\(due.sorted())")
        // Spread, not in step: 49 uniform draws leave no gap wider than the window's half and
        // cover most of it (each bound fails with a probability below 1e-12).
        let sorted = due.sorted()
        #expect(sorted.first! < 120 && sorted.last! > 370, "\(sorted)")
        #expect(Set(due).count > 30, "\(sorted)")
        stop(mesh)
    }

    @Test func aNodeThatDialsNobodyAtStartSchedulesNothing() throws {
        let (loop, mesh) = node("a50", of: Self.config(50))
        mesh.dialAtStart()
        #expect(mesh.peers.values.allSatisfy { $0.nextDialAt == nil && $0.redialTimer == nil })
        stop(mesh)
    }

    @Test func theWindowStopsAtOneSecond() throws {
        let (loop, mesh) = node("a001", of: ClusterConfig(secret: TestNode.secret, nodes: (1...300).map { i in
            let padded = String(repeating: "0", count: 3 - String(i).count) + String(i)
            return NodeEntry(name: "a\(padded)", listen: HostPort(host: "127.0.0.1", port: 10_000 + i),
                             mesh: HostPort(host: "127.0.0.1", port: 20_000 + i))
        }))
        mesh.dialAtStart()
        let due = mesh.peers.values.compactMap { $0.nextDialAt.map { Int(($0 - loop.now).nanoseconds / 1_000_000) } }
        #expect(due.count == 299)
        #expect(due.allSatisfy { (0...1000).contains($0) })
        #expect(due.max()! > 900, "299 peers spread over the whole second, not 2,990 ms: \(due.max()!)")
        stop(mesh)
    }

    @Test func peersAddedByAReloadAreDialedSpreadNotAtOnce() throws {
        let (loop, mesh) = node("a01", of: Self.config(3))
        mesh.started = true  // as after `start`: a reload now dials what it adds
        // On the loop's thread, without running the loop (see `stop`).
        let report = mesh.applyOnLoop(Self.config(20))
        #expect(report.added == (4...20).map(Self.name))
        let added = (4...20).map(Self.name)
        let due = dueIn(loop, mesh, added)
        #expect(due.allSatisfy { $0 != nil }, "every added peer has a dial coming")
        #expect(added.allSatisfy { mesh.peers[$0]?.dialing == false })
        // 19 peers after the reload: a window of 190 ms.
        #expect(due.allSatisfy { (0...190).contains($0!) }, "\(due)")
        #expect(Set(due).count > 5, "\(due)")
        // a02 and a03 were there before: the reload leaves them as they were.
        #expect(mesh.peers["a02"]?.nextDialAt == nil && mesh.peers["a03"]?.nextDialAt == nil)
        stop(mesh)
    }
}
