import ClusterConfig
import Logging
import NIOCore
import NIOEmbedded
@testable import MeshFanout

/// A node of an in-memory two-node mesh like `TestNode`, but with `[mesh]` settings of the
/// test's choosing and its per-peer counters recorded, for what a link does as it comes up.
final class LinkUpTestNode {
    let name: String
    let loop = EmbeddedEventLoop()
    let mesh: MeshFanout
    let metrics = RecordingMetricsFactory()
    let config: ClusterConfig

    init(_ name: String, mesh settings: MeshSettings = MeshSettings()) {
        self.name = name
        config = ClusterConfig(secret: TestNode.secret, mesh: settings, nodes: TestNode.config.nodes)
        mesh = MeshFanout(config: config, localNode: config.node(named: name)!, eventLoop: loop,
                          logger: Logger(label: "mesh-test", factory: { _ in SwiftLogNoOpLogHandler() }), epoch: nil,
                          relayMetrics: RelayMetrics(factory: metrics), metricsFactory: metrics)
        mesh.start(delivery: RecordingDelivery())
    }

    /// A link as `MeshFanout` makes it (frame limit from `[mesh] max_frame`), active, its HELLO written.
    func link(role: MeshHandshake.Role) throws -> EmbeddedChannel {
        let channel = EmbeddedChannel(loop: loop)
        try mesh.addLinkHandlers(to: channel, role: role)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 40_000)).wait()
        return channel
    }

    /// A per-peer counter's total, e.g. `counter("chatmesh_mesh_bytes_total", peer: "a2", "out")`.
    func counter(_ label: String, peer: String, _ direction: String) -> Int64 {
        metrics.total(RecordingMetricsFactory.key(label, [("peer", peer), ("direction", direction)]))
    }
}

/// What one side wrote in one turn of `shuttle`, in order.
struct WrittenChunk {
    var frames: [MeshFrame]
    var bytes: Int
}

/// Carries bytes both ways until neither side writes more. Everything a side wrote in one turn
/// is handed to the other as ONE chunk, as TCP may coalesce it (the dialer's last handshake
/// frame then arrives with what the acceptor sent after it). Returns every frame with its
/// size on the wire, per direction.
@discardableResult
func shuttle(_ a: (node: LinkUpTestNode, channel: EmbeddedChannel), _ b: (node: LinkUpTestNode, channel: EmbeddedChannel))
    throws -> (aToB: [(frame: MeshFrame, bytes: Int)], bToA: [(frame: MeshFrame, bytes: Int)]) {
    var aToB: [(frame: MeshFrame, bytes: Int)] = [], bToA: [(frame: MeshFrame, bytes: Int)] = []
    var moved = true
    while moved {
        moved = false
        a.node.loop.run()
        b.node.loop.run()
        for (from, to, log) in [(a.channel, b.channel, 0), (b.channel, a.channel, 1)] {
            var chunk = ByteBufferAllocator().buffer(capacity: 0)
            while var part = try from.readOutbound(as: ByteBuffer.self) { chunk.writeBuffer(&part) }
            guard chunk.readableBytes > 0 else { continue }
            moved = true
            var copy = chunk
            let decoder = MeshFrameDecoder(maxFrameLength: 1 << 24)
            while true {
                let before = copy.readableBytes
                guard let frame = try decoder.next(from: &copy) else { break }
                let entry = (frame: frame, bytes: before - copy.readableBytes)
                if log == 0 { aToB.append(entry) } else { bToA.append(entry) }
            }
            if to.isActive { try to.writeInbound(chunk) }
        }
    }
    return (aToB, bToA)
}

/// Frames after the handshake: what the per-peer counters are about.
func afterHandshake(_ frames: [(frame: MeshFrame, bytes: Int)]) -> [(frame: MeshFrame, bytes: Int)] {
    frames.filter {
        switch $0.frame {
        case .hello, .auth: false
        default: true
        }
    }
}
