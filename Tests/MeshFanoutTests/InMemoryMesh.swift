import ClusterConfig
import NIOCore
import NIOEmbedded
@testable import MeshFanout

/// A node `InMemoryMesh` can link: a real `MeshFanout` on its own `EmbeddedEventLoop`, in the
/// cluster `config` names. `bind()` is never called, so nothing dials or listens.
protocol InMemoryMeshNode: AnyObject {
    static var config: ClusterConfig { get }
    var name: String { get }
    var loop: EmbeddedEventLoop { get }
    var mesh: MeshFanout { get }
}

extension InMemoryMeshNode {
    /// A link as `MeshFanout` would make it (a `PeerLinkHandler`), active, its HELLO written.
    func link(role: MeshHandshake.Role) throws -> EmbeddedChannel {
        let handshake = MeshHandshake(localName: name, localEpoch: mesh.epoch, secret: TestNode.secret, role: role,
                                      knownPeers: Set(Self.config.nodes.map(\.name)).subtracting([name]))
        let handler = PeerLinkHandler(mesh: mesh, handshake: handshake, maxFrame: Self.config.mesh.maxFrame)
        let channel = EmbeddedChannel(handler: handler, loop: loop)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 40_000)).wait()
        return channel
    }
}

extension ClusterConfig {
    /// a1, a2 and a3 on loopback with the test secret: the cluster of the three-node in-memory meshes.
    static let threeTestNodes = ClusterConfig(secret: TestNode.secret, nodes: ["a1", "a2", "a3"].enumerated().map { index, name in
        NodeEntry(name: name, listen: HostPort(host: "127.0.0.1", port: 8001 + index),
                  mesh: HostPort(host: "127.0.0.1", port: 9001 + index))
    })
}

/// Nodes and the links between them; `settle()` carries bytes until the mesh is quiet and
/// keeps every frame seen, per direction ("a1>a2"). Open so a harness can add how it starts.
class InMemoryMesh<Node: InMemoryMeshNode> {
    struct Link {
        let dialer: Node, dialerChannel: EmbeddedChannel
        let acceptor: Node, acceptorChannel: EmbeddedChannel
    }

    let nodes: [Node]
    private(set) var links: [Link] = []
    private(set) var seen: [String: [MeshFrame]] = [:]

    init(_ nodes: [Node]) { self.nodes = nodes }

    subscript(name: String) -> Node { nodes.first { $0.name == name }! }

    /// Links every pair (the smaller name dials) and completes their handshakes, one pair at a time.
    static func connected(_ nodes: [Node]) throws -> InMemoryMesh<Node> {
        let mesh = InMemoryMesh(nodes)
        for (index, dialer) in nodes.enumerated() {
            for acceptor in nodes[(index + 1)...] { try mesh.connect(dialer, acceptor) }
        }
        return mesh
    }

    /// A new link, handshake not yet carried. Between two nodes already linked it replaces the
    /// old one for `link(_:_:)` once its handshake completes.
    @discardableResult
    func addLink(_ dialer: Node, _ acceptor: Node) throws -> Link {
        let link = Link(dialer: dialer, dialerChannel: try dialer.link(role: .dialer(expectedPeer: acceptor.name)),
                        acceptor: acceptor, acceptorChannel: try acceptor.link(role: .acceptor))
        links.append(link)
        return link
    }

    /// A new link with its handshake completed.
    @discardableResult
    func connect(_ dialer: Node, _ acceptor: Node) throws -> Link {
        let link = try addLink(dialer, acceptor)
        try settle()
        return link
    }

    /// The newest link between `a` and `b`, whichever dialed.
    func link(_ a: String, _ b: String) -> Link {
        links.last { ($0.dialer.name == a && $0.acceptor.name == b) || ($0.dialer.name == b && $0.acceptor.name == a) }!
    }

    /// `node`'s channel of the link between `node` and `other`.
    func channel(of node: String, to other: String) -> EmbeddedChannel {
        let link = link(node, other)
        return link.dialer.name == node ? link.dialerChannel : link.acceptorChannel
    }

    /// Frames `from` sent `to` since the last `clearSeen()`.
    func frames(_ from: String, _ to: String) -> [MeshFrame] { seen["\(from)>\(to)"] ?? [] }

    func clearSeen() { seen = [:] }

    func settle() throws {
        var moved = true
        while moved {
            moved = false
            for node in nodes { node.loop.run() }
            for link in links {
                moved = try carry(link.dialerChannel, from: link.dialer, to: link.acceptorChannel, link.acceptor) || moved
                moved = try carry(link.acceptorChannel, from: link.acceptor, to: link.dialerChannel, link.dialer) || moved
            }
        }
    }

    /// Moves what `out` wrote into `into` (dropped once `into` is closed), noting its frames.
    private func carry(_ out: EmbeddedChannel, from: Node, to into: EmbeddedChannel, _ receiver: Node) throws -> Bool {
        var moved = false
        while let chunk = try out.readOutbound(as: ByteBuffer.self) {
            var copy = chunk
            seen["\(from.name)>\(receiver.name)", default: []] += try drain(MeshFrameDecoder(maxFrameLength: 1 << 24), &copy)
            if into.isActive { try into.writeInbound(chunk) }
            moved = true
        }
        return moved
    }
}
