import NIOCore
import NIOEmbedded
import Testing
@testable import MeshFanout

/// The cap on links in their handshake keeps strangers from holding a node's accepts, and only
/// that: this node's own dials to its peers neither count against it nor get closed for it
/// (at N = 100 a cold start had ~50 dials and ~50 accepts pending at once, docs/SCALE.md).
@Suite struct PendingHandshakeCapTests {
    static let cap = MeshFanout.maxUnauthenticatedLinks

    func dials(_ node: LinkUpTestNode, count: Int) throws -> [EmbeddedChannel] {
        try (0..<count).map { _ in try node.link(role: .dialer(expectedPeer: "a2")) }
    }

    func accepts(_ node: LinkUpTestNode, count: Int) throws -> [EmbeddedChannel] {
        try (0..<count).map { _ in
            let channel = EmbeddedChannel(loop: node.loop)
            try node.mesh.accept(channel)
            try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 40_001)).wait()
            return channel
        }
    }

    func allActive(_ channels: [EmbeddedChannel]) -> Bool {
        channels.allSatisfy { $0.isActive }
    }

    /// The frames a link wrote, HELLO included.
    func frames(_ channel: EmbeddedChannel) throws -> [MeshFrame] {
        var stream = ByteBufferAllocator().buffer(capacity: 0)
        while var chunk = try channel.readOutbound(as: ByteBuffer.self) { stream.writeBuffer(&chunk) }
        return try drain(MeshFrameDecoder(maxFrameLength: 1 << 24), &stream)
    }

    @Test func ownDialsAtTheCapDoNotMakeAnAcceptCloseOne() throws {
        let node = LinkUpTestNode("a1")
        let dialed = try dials(node, count: Self.cap)
        let accepted = try accepts(node, count: 1)
        node.loop.run()
        #expect(allActive(dialed))
        #expect(allActive(accepted))
        #expect(node.mesh.pendingHandshakes.count == Self.cap + 1)
        for channel in dialed { #expect(try frames(channel).allSatisfy { if case .goodbye = $0 { false } else { true } }) }
    }

    @Test func acceptsPastTheCapCloseTheOldestAcceptNeverADial() throws {
        let node = LinkUpTestNode("a1")
        let early = try dials(node, count: 10)
        let accepted = try accepts(node, count: Self.cap)
        let late = try dials(node, count: 10)
        #expect(allActive(accepted))

        let newcomer = try accepts(node, count: 1)
        node.loop.run()
        #expect(!accepted[0].isActive)
        #expect(try frames(accepted[0]).last == .goodbye("too many pending handshakes"))
        #expect(allActive(Array(accepted.dropFirst())))
        #expect(allActive(newcomer))
        #expect(allActive(early + late))
        // The closed one left the list; the dials and the other accepts are still pending.
        #expect(node.mesh.pendingHandshakes.count == 20 + Self.cap)
        #expect(node.mesh.pendingHandshakes.filter { $0.dialedPeer == nil }.count == Self.cap)
    }
}
