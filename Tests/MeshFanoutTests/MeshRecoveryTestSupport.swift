import ChatCore
import ClusterConfig
import Logging
import NIOCore
import NIOEmbedded
import Testing
@testable import MeshFanout

/// What a recovery-on hub does with a delivery (RoomHub.deliverLocally): stamps it through the
/// store on the store's loop, and here records it instead of writing it to members.
final class StampingDelivery: FanoutDelivery, @unchecked Sendable { // used on the node's embedded loop only
    struct Delivered: Equatable {
        var room: String
        var origin: MessageOrigin?
        /// The engine frame as members get it: `42["message",{…},"<offset>"]`.
        var frame: String
    }

    let store: RecoveryStore
    private(set) var delivered: [Delivered] = []

    init(store: RecoveryStore) { self.store = store }

    var recovery: RecoveryStore? { store }

    func deliverLocally(_ broadcast: ChatBroadcast) {
        store.eventLoop.preconditionInEventLoop()
        let stamped = store.stamp(broadcast, arrivedAt: .now())
        delivered.append(Delivered(room: stamped.room, origin: stamped.origin, frame: String(buffer: stamped.engineFrame)))
    }
}

/// A session as the store sees one: counts the times it was told it was taken over.
final class RecordingSession: RecoverableSession, @unchecked Sendable { // used on one embedded loop only
    private(set) var takenOver = 0
    func sessionTakenOver() { takenOver += 1 }
}

/// One node of an in-memory three-node mesh, like `TestNode`, with recovery on (a store on its
/// loop, a fixed epoch) or off (a plain `RecordingDelivery`).
final class RecoveryTestNode {
    static let config = ClusterConfig(secret: TestNode.secret, nodes: ["a1", "a2", "a3"].enumerated().map { index, name in
        NodeEntry(name: name, listen: HostPort(host: "127.0.0.1", port: 8001 + index),
                  mesh: HostPort(host: "127.0.0.1", port: 9001 + index))
    })

    let name: String
    let loop = EmbeddedEventLoop()
    let mesh: MeshFanout
    let store: RecoveryStore?
    let stamping: StampingDelivery?
    let plain: RecordingDelivery?

    init(_ name: String, epoch: UInt64, recovery: Bool = true) {
        self.name = name
        mesh = MeshFanout(config: Self.config, localNode: Self.config.node(named: name)!, eventLoop: loop,
                          logger: Logger(label: "mesh-test", factory: { _ in SwiftLogNoOpLogHandler() }), epoch: epoch)
        if recovery {
            let store = RecoveryStore(policy: RecoveryPolicy(), eventLoop: loop, localNode: name, epoch: epoch,
                                      metrics: RecoveryMetrics(), wallClock: { 1_000_000 })
            self.store = store
            stamping = StampingDelivery(store: store)
            plain = nil
            mesh.start(delivery: stamping!)
        } else {
            store = nil
            stamping = nil
            plain = RecordingDelivery()
            mesh.start(delivery: plain!)
        }
    }

    deinit { store?.shutdown() }

    var origin: UInt32 { MessageOrigin.originID(epoch: mesh.epoch) }
    var delivered: [StampingDelivery.Delivered] { stamping?.delivered ?? [] }

    func link(role: MeshHandshake.Role) throws -> EmbeddedChannel {
        let handshake = MeshHandshake(localName: name, localEpoch: mesh.epoch, secret: TestNode.secret, role: role,
                                      knownPeers: Set(Self.config.nodes.map(\.name)).subtracting([name]))
        let handler = PeerLinkHandler(mesh: mesh, handshake: handshake, maxFrame: Self.config.mesh.maxFrame)
        let channel = EmbeddedChannel(handler: handler, loop: loop)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 40_000)).wait()
        return channel
    }
}

/// Nodes and the links between them; `settle()` carries bytes until the mesh is quiet and
/// keeps every frame seen, per direction ("a1>a2").
final class RecoveryTestMesh {
    struct Link {
        let dialer: RecoveryTestNode, dialerChannel: EmbeddedChannel
        let acceptor: RecoveryTestNode, acceptorChannel: EmbeddedChannel
    }

    let nodes: [RecoveryTestNode]
    private(set) var links: [Link] = []
    private(set) var seen: [String: [MeshFrame]] = [:]

    init(_ nodes: [RecoveryTestNode]) { self.nodes = nodes }

    subscript(name: String) -> RecoveryTestNode { nodes.first { $0.name == name }! }

    /// Links every pair (the smaller name dials) and completes their handshakes.
    static func connected(_ nodes: [RecoveryTestNode]) throws -> RecoveryTestMesh {
        let mesh = RecoveryTestMesh(nodes)
        for (index, dialer) in nodes.enumerated() {
            for acceptor in nodes[(index + 1)...] { try mesh.connect(dialer, acceptor) }
        }
        return mesh
    }

    @discardableResult
    func connect(_ dialer: RecoveryTestNode, _ acceptor: RecoveryTestNode) throws -> Link {
        let link = Link(dialer: dialer, dialerChannel: try dialer.link(role: .dialer(expectedPeer: acceptor.name)),
                        acceptor: acceptor, acceptorChannel: try acceptor.link(role: .acceptor))
        links.append(link)
        try settle()
        return link
    }

    func link(_ a: String, _ b: String) -> Link {
        links.last { ($0.dialer.name == a && $0.acceptor.name == b) || ($0.dialer.name == b && $0.acceptor.name == a) }!
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

    private func carry(_ out: EmbeddedChannel, from: RecoveryTestNode, to into: EmbeddedChannel, _ receiver: RecoveryTestNode) throws -> Bool {
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

/// The offset a stamped frame ends with: `…,"<offset>"]`.
func offset(of frame: String) -> String? {
    guard frame.hasSuffix("\"]"), let open = frame.dropLast(2).lastIndex(of: "\"") else { return nil }
    return String(frame[frame.index(after: open)..<frame.index(frame.endIndex, offsetBy: -2)])
}
