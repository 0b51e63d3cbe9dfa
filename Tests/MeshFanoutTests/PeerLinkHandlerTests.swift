import ChatCore
import ClusterConfig
import Logging
import NIOCore
import NIOEmbedded
import Testing
@testable import MeshFanout

/// Collects what a mesh hands to local members.
final class RecordingDelivery: FanoutDelivery, @unchecked Sendable { // called on the mesh's loop only
    private(set) var delivered: [String] = []

    func deliverLocally(_ broadcast: ChatBroadcast) {
        delivered.append("\(broadcast.room) \(String(buffer: broadcast.engineFrame))")
    }
}

/// One node of an in-memory mesh: a real `MeshFanout` on its own `EmbeddedEventLoop`, whose
/// links are `PeerLinkHandler`s on `EmbeddedChannel`s. `bind()` is never called, so nothing
/// dials or listens; tests build the links and carry bytes between them.
final class TestNode {
    static let secret = "mesh-test-secret"
    static let config = ClusterConfig(secret: secret, nodes: [
        NodeEntry(name: "a1", listen: HostPort(host: "127.0.0.1", port: 8001), mesh: HostPort(host: "127.0.0.1", port: 9001)),
        NodeEntry(name: "a2", listen: HostPort(host: "127.0.0.1", port: 8002), mesh: HostPort(host: "127.0.0.1", port: 9002)),
    ])

    let name: String
    let loop = EmbeddedEventLoop()
    let mesh: MeshFanout
    let delivery = RecordingDelivery()

    init(_ name: String) {
        self.name = name
        mesh = MeshFanout(config: Self.config, localNode: Self.config.node(named: name)!, eventLoop: loop,
                          logger: Logger(label: "mesh-test", factory: { _ in SwiftLogNoOpLogHandler() }))
        mesh.start(delivery: delivery)
    }

    /// The process epoch the mesh picked (private; read by reflection so resume points match).
    var epoch: UInt64 { Mirror(reflecting: mesh).descendant("epoch") as! UInt64 }

    /// A link as `MeshFanout` would make it, active, with its HELLO already written.
    func link(role: MeshHandshake.Role, secret: String = TestNode.secret) throws -> EmbeddedChannel {
        let handshake = MeshHandshake(localName: name, localEpoch: epoch, secret: secret, role: role,
                                      knownPeers: Set(Self.config.nodes.map(\.name)).subtracting([name]))
        let handler = PeerLinkHandler(mesh: mesh, handshake: handshake, maxFrame: Self.config.mesh.maxFrame)
        let channel = EmbeddedChannel(handler: handler, loop: loop)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 40_000)).wait()
        return channel
    }
}

/// Reads every frame written (and flushed) on `channel`.
func writtenFrames(_ channel: EmbeddedChannel) throws -> [MeshFrame] {
    var stream = ByteBufferAllocator().buffer(capacity: 0)
    while var chunk = try channel.readOutbound(as: ByteBuffer.self) { stream.writeBuffer(&chunk) }
    let frames = try drain(MeshFrameDecoder(maxFrameLength: 1 << 24), &stream)
    #expect(stream.readableBytes == 0)
    return frames
}

/// Carries bytes both ways until neither side has anything to say; returns the frames seen.
@discardableResult
func pump(_ a: (node: TestNode, channel: EmbeddedChannel), _ b: (node: TestNode, channel: EmbeddedChannel))
    throws -> (aToB: [MeshFrame], bToA: [MeshFrame]) {
    var aToB: [MeshFrame] = [], bToA: [MeshFrame] = []
    var moved = true
    while moved {
        moved = false
        a.node.loop.run()
        b.node.loop.run()
        while let chunk = try a.channel.readOutbound(as: ByteBuffer.self) {
            var copy = chunk
            aToB += try drain(MeshFrameDecoder(maxFrameLength: 1 << 24), &copy)
            if b.channel.isActive { try b.channel.writeInbound(chunk) }
            moved = true
        }
        while let chunk = try b.channel.readOutbound(as: ByteBuffer.self) {
            var copy = chunk
            bToA += try drain(MeshFrameDecoder(maxFrameLength: 1 << 24), &copy)
            if a.channel.isActive { try a.channel.writeInbound(chunk) }
            moved = true
        }
    }
    return (aToB, bToA)
}

func message(_ room: String, _ text: String) -> ChatMessage {
    ChatMessage(room: room, eventJSON: #"{"text":"\#(text)"}"#)
}

func delivered(_ room: String, _ text: String) -> String {
    #"\#(room) 42["message",{"text":"\#(text)"}]"#
}

/// Each test makes its nodes itself, in its (synchronous) body: an `EmbeddedEventLoop` must be
/// created, used and released on one thread, which a suite's stored property does not ensure.
@Suite struct PeerLinkHandlerRefusalTests {
    /// An accepted link (a2 accepts from a1), past its HELLO.
    func acceptedLink(_ node: TestNode) throws -> EmbeddedChannel {
        let channel = try node.link(role: .acceptor)
        guard case .hello(let hello) = try writtenFrames(channel).first else {
            Issue.record("no HELLO first")
            return channel
        }
        #expect(hello.node == "a2")
        #expect(hello.epoch == node.epoch)
        return channel
    }

    @Test func linkSendsHelloAsSoonAsItIsActive() throws {
        let node = TestNode("a2")
        let channel = try node.link(role: .acceptor)
        let frames = try writtenFrames(channel)
        #expect(frames.count == 1)
        guard case .hello(let hello) = frames.first else { Issue.record("not a HELLO"); return }
        #expect(hello.version == MeshHello.protocolVersion)
        #expect(hello.nonce.count == 32)
        #expect(channel.isActive)
    }

    @Test func garbageBeforeAuthenticationClosesTheLinkWithAGoodbye() throws {
        let node = TestNode("a2")
        let channel = try acceptedLink(node)
        try channel.writeInbound(buffer(hex("00000003 EE EEEE")))
        #expect(try writtenFrames(channel) == [.goodbye("bad frame: unknown frame type 238")])
        #expect(!channel.isActive)
    }

    @Test func oversizedLengthBeforeAuthenticationClosesBeforeTheBodyArrives() throws {
        let node = TestNode("a2")
        let channel = try acceptedLink(node)
        // The configured maximum frame is 4 MiB, but before authentication only 4 KiB is allowed.
        #expect(PeerLinkHandler.handshakeFrameLimit == 4096)
        try channel.writeInbound(buffer(hex("00001001")))
        #expect(try writtenFrames(channel) == [.goodbye("bad frame: frame of 4097 bytes exceeds the limit of 4096")])
        #expect(!channel.isActive)
    }

    @Test func zeroLengthFrameClosesTheLink() throws {
        let node = TestNode("a2")
        let channel = try acceptedLink(node)
        try channel.writeInbound(buffer(hex("00000000")))
        #expect(try writtenFrames(channel) == [.goodbye("bad frame: frame without a type byte")])
        #expect(!channel.isActive)
    }

    @Test func pubBeforeAuthenticationIsRefusedAndNotDelivered() throws {
        let node = TestNode("a2")
        let channel = try acceptedLink(node)
        try channel.writeInbound(buffer(wire(.pub(sequence: 1, room: "r1", payload: buffer(#"2["message",{}]"#)))))
        #expect(try writtenFrames(channel) == [.goodbye("pub frame before authentication")])
        #expect(!channel.isActive)
        #expect(node.delivery.delivered.isEmpty)
    }

    @Test func subBeforeAuthenticationIsRefused() throws {
        let node = TestNode("a2")
        let channel = try acceptedLink(node)
        try channel.writeInbound(buffer(wire(.sub("r1"))))
        #expect(try writtenFrames(channel) == [.goodbye("sub frame before authentication")])
        #expect(!channel.isActive)
    }

    @Test func wrongSecretIsRefusedAndThePeerNeverCountsAsUp() throws {
        let node = TestNode("a2")
        let channel = try node.link(role: .acceptor)
        guard case .hello(let ours) = try writtenFrames(channel).first else { Issue.record("no HELLO"); return }
        var stranger = MeshHandshake(localName: "a1", localEpoch: 77, secret: "guessed", role: .dialer(expectedPeer: "a2"),
                                     knownPeers: ["a2"])
        try channel.writeInbound(MeshFrameCodec.encode(stranger.hello))
        #expect(try writtenFrames(channel).isEmpty, "the acceptor proves nothing before the dialer has")
        guard case .send(let strangerAuth) = stranger.receive(.hello(ours), resume: { _ in (0, 0) }) else {
            Issue.record("stranger sent no AUTH"); return
        }
        try channel.writeInbound(MeshFrameCodec.encode(strangerAuth))
        #expect(try writtenFrames(channel) == [.goodbye("authentication failed: wrong secret or tampered handshake")])
        #expect(!channel.isActive)
        #expect(node.mesh.peerStatus().up.isEmpty)
    }

    @Test func acceptorRefusesADialFromALargerName() throws {
        let node = TestNode("a1")
        let channel = try node.link(role: .acceptor)
        _ = try writtenFrames(channel)
        let hello = MeshHello(node: "a2", epoch: 5, nonce: nonceA)
        try channel.writeInbound(MeshFrameCodec.encode(.hello(hello)))
        #expect(try writtenFrames(channel) == [.goodbye("'a2' must not dial 'a1': the smaller name dials")])
        #expect(!channel.isActive)
    }

    @Test func silentPeerIsDroppedAfterTheHandshakeTimeout() throws {
        let node = TestNode("a2")
        let channel = try acceptedLink(node)
        node.loop.advanceTime(by: PeerLinkHandler.handshakeTimeout - .milliseconds(1))
        #expect(channel.isActive)
        node.loop.advanceTime(by: .milliseconds(1))
        #expect(try writtenFrames(channel) == [.goodbye("handshake timed out")])
        #expect(!channel.isActive)
    }

    @Test func framesAfterARefusalAreIgnored() throws {
        let node = TestNode("a2")
        let channel = try acceptedLink(node)
        // Garbage and a valid-looking frame in one read: only one GOODBYE, nothing after it.
        try channel.writeInbound(buffer(hex("00000001 FF") + wire(.sub("r1")) + wire(.ping(1))))
        #expect(try writtenFrames(channel) == [.goodbye("bad frame: unknown frame type 255")])
    }
}

@Suite struct MeshLinkTests {
    /// a1 dials a2; returns both ends after the handshake ran, and what crossed.
    func connect(_ a1: TestNode, _ a2: TestNode) throws -> (dialed: EmbeddedChannel, accepted: EmbeddedChannel, aToB: [MeshFrame], bToA: [MeshFrame]) {
        let dialed = try a1.link(role: .dialer(expectedPeer: "a2"))
        let accepted = try a2.link(role: .acceptor)
        let seen = try pump((a1, dialed), (a2, accepted))
        return (dialed, accepted, seen.aToB, seen.bToA)
    }

    @Test func authenticatedLinkMarksBothPeersUpAndExchangesSnapshots() throws {
        let a1 = TestNode("a1"), a2 = TestNode("a2")
        a2.mesh.subscribe(room: "r2")
        let link = try connect(a1, a2)
        #expect(a1.mesh.peerStatus().up == ["a2"])
        #expect(a2.mesh.peerStatus().up == ["a1"])
        #expect(link.aToB.map(\.type) == [.hello, .auth, .snapshot])
        #expect(link.bToA.map(\.type) == [.hello, .auth, .snapshot])
        #expect(link.aToB.last == .snapshot([]))
        #expect(link.bToA.last == .snapshot(["r2"]))
    }

    @Test func pubGoesOnlyToAPeerWithMembersInTheRoom() throws {
        let a1 = TestNode("a1"), a2 = TestNode("a2")
        let link = try connect(a1, a2)
        a2.mesh.subscribe(room: "r")
        var seen = try pump((a1, link.dialed), (a2, link.accepted))
        #expect(seen.bToA == [.sub("r")])

        a1.mesh.publish(message("r", "hi"))
        a1.mesh.publish(message("elsewhere", "nobody listens"))
        seen = try pump((a1, link.dialed), (a2, link.accepted))
        #expect(seen.aToB.count == 1)
        #expect(seen.aToB.first?.type == .pub)
        #expect(a2.delivery.delivered == [delivered("r", "hi")])
        #expect(a1.delivery.delivered == [delivered("r", "hi"), delivered("elsewhere", "nobody listens")])

        a2.mesh.unsubscribe(room: "r")
        try pump((a1, link.dialed), (a2, link.accepted))
        a1.mesh.publish(message("r", "after unsub"))
        seen = try pump((a1, link.dialed), (a2, link.accepted))
        #expect(seen.aToB.isEmpty)
        #expect(a2.delivery.delivered == [delivered("r", "hi")])
    }

    /// The SUB must be on the wire before anything the same tick writes to local members (the
    /// joiner's own join echo): a task queued right after the subscribe already finds it flushed.
    @Test func subIsFlushedBeforeTheTasksQueuedAfterIt() throws {
        let a1 = TestNode("a1"), a2 = TestNode("a2")
        let link = try connect(a1, a2)
        a2.mesh.subscribe(room: "r")
        final class Seen { var frames: [MeshFrame] = [] }
        let seen = Seen()
        a2.loop.execute { seen.frames = (try? writtenFrames(link.accepted)) ?? [] }
        a2.loop.run()
        #expect(seen.frames == [.sub("r")])
    }

    @Test func pubCarriesTheSocketIOPacketVerbatimWithIncreasingSequences() throws {
        let a1 = TestNode("a1"), a2 = TestNode("a2")
        let link = try connect(a1, a2)
        a2.mesh.subscribe(room: "r")
        try pump((a1, link.dialed), (a2, link.accepted))
        a1.mesh.publish(message("r", "one"))
        a1.mesh.publish(message("r", "two"))
        let seen = try pump((a1, link.dialed), (a2, link.accepted))
        #expect(seen.aToB == [
            .pub(sequence: 1, room: "r", payload: buffer(#"2["message",{"text":"one"}]"#)),
            .pub(sequence: 2, room: "r", payload: buffer(#"2["message",{"text":"two"}]"#)),
        ])
    }

    @Test func receiverAcknowledgesAfterAShortDelay() throws {
        let a1 = TestNode("a1"), a2 = TestNode("a2")
        let link = try connect(a1, a2)
        a2.mesh.subscribe(room: "r")
        try pump((a1, link.dialed), (a2, link.accepted))
        for index in 1...3 { a1.mesh.publish(message("r", "m\(index)")) }
        var seen = try pump((a1, link.dialed), (a2, link.accepted))
        #expect(seen.bToA.isEmpty)
        a2.loop.advanceTime(by: MeshFanout.ackDelay)
        seen = try pump((a1, link.dialed), (a2, link.accepted))
        #expect(seen.bToA == [.ack(3)])
    }

    @Test func frameLimitIsRaisedAfterAuthentication() throws {
        let a1 = TestNode("a1"), a2 = TestNode("a2")
        let link = try connect(a1, a2)
        a2.mesh.subscribe(room: "r")
        try pump((a1, link.dialed), (a2, link.accepted))
        let long = String(repeating: "x", count: 20_000)
        a1.mesh.publish(message("r", long))
        try pump((a1, link.dialed), (a2, link.accepted))
        #expect(a2.delivery.delivered == [delivered("r", long)])
        #expect(link.accepted.isActive)
    }

    @Test func pingIsAnsweredWithPong() throws {
        let a1 = TestNode("a1"), a2 = TestNode("a2")
        let link = try connect(a1, a2)
        try link.accepted.writeInbound(MeshFrameCodec.encode(.ping(99)))
        a2.loop.run()
        #expect(try writtenFrames(link.accepted) == [.pong(99)])
    }

    @Test func helloAfterAuthenticationClosesTheLink() throws {
        let a1 = TestNode("a1"), a2 = TestNode("a2")
        let link = try connect(a1, a2)
        try link.accepted.writeInbound(MeshFrameCodec.encode(.hello(MeshHello(node: "a1", epoch: 1, nonce: nonceA))))
        #expect(try writtenFrames(link.accepted) == [.goodbye("hello frame after authentication")])
        #expect(!link.accepted.isActive)
        #expect(a2.mesh.peerStatus().up.isEmpty)
    }

    @Test func garbageAfterAuthenticationClosesTheLink() throws {
        let a1 = TestNode("a1"), a2 = TestNode("a2")
        let link = try connect(a1, a2)
        try link.accepted.writeInbound(buffer(hex("00000002 63 00")))
        #expect(try writtenFrames(link.accepted) == [.goodbye("bad frame: unknown frame type 99")])
        #expect(!link.accepted.isActive)
        #expect(a2.mesh.peerStatus().down == ["a1"])
    }

    @Test func goodbyeFromThePeerClosesTheLink() throws {
        let a1 = TestNode("a1"), a2 = TestNode("a2")
        let link = try connect(a1, a2)
        try link.accepted.writeInbound(MeshFrameCodec.encode(.goodbye("shutting down")))
        #expect(!link.accepted.isActive)
        #expect(a2.mesh.peerStatus().up.isEmpty)
    }

    /// A link dies with a PUB still in flight and one more is published while it is down: after
    /// reconnect the peer says what it has and gets exactly the rest, each delivered once.
    @Test func reconnectResendsWhatThePeerMissedExactlyOnce() throws {
        let a1 = TestNode("a1"), a2 = TestNode("a2")
        var link = try connect(a1, a2)
        a2.mesh.subscribe(room: "r")
        try pump((a1, link.dialed), (a2, link.accepted))
        a1.mesh.publish(message("r", "m1"))
        try pump((a1, link.dialed), (a2, link.accepted))
        a1.mesh.publish(message("r", "m2"))
        a1.loop.run() // m2 is written but never reaches a2
        _ = try link.dialed.readOutbound(as: ByteBuffer.self)
        try link.dialed.close().wait()
        try link.accepted.close().wait()
        #expect(a1.mesh.peerStatus().up.isEmpty && a2.mesh.peerStatus().up.isEmpty)
        a1.mesh.publish(message("r", "m3")) // buffered: a2 still has members in "r"

        link = try connect(a1, a2)
        #expect(link.aToB.compactMap { frame -> UInt64? in
            if case .pub(let sequence, _, _) = frame { return sequence }
            return nil
        } == [2, 3])
        #expect(a2.delivery.delivered == [delivered("r", "m1"), delivered("r", "m2"), delivered("r", "m3")])

        // Again, now with nothing lost: no resend at all.
        try link.dialed.close().wait()
        try link.accepted.close().wait()
        link = try connect(a1, a2)
        #expect(!link.aToB.contains { $0.type == .pub })
        #expect(a2.delivery.delivered.count == 3)
    }

    @Test func restartedPeerGetsNothingQueuedForItsPreviousLife() throws {
        let a1 = TestNode("a1"), a2 = TestNode("a2")
        let link = try connect(a1, a2)
        a2.mesh.subscribe(room: "r")
        try pump((a1, link.dialed), (a2, link.accepted))
        try link.dialed.close().wait()
        try link.accepted.close().wait()
        a1.mesh.publish(message("r", "for the old a2"))

        let restarted = TestNode("a2")
        #expect(restarted.epoch != a2.epoch)
        let dialed = try a1.link(role: .dialer(expectedPeer: "a2"))
        let accepted = try restarted.link(role: .acceptor)
        let seen = try pump((a1, dialed), (restarted, accepted))
        #expect(!seen.aToB.contains { $0.type == .pub })
        #expect(restarted.delivery.delivered.isEmpty)
        #expect(a1.mesh.peerStatus().up == ["a2"])
    }

    /// A gap means PUBs were dropped past the buffer bound. A restarted peer lost nothing that
    /// way (its old queue was discarded on purpose, uncounted), yet numbering to it continues
    /// from the old life, so its first PUB shows a gap and inflates chatmesh_mesh_pubs_gap_total.
    @Test func restartedPeerSeesNoGapInItsFirstPubs() throws {
        let a1 = TestNode("a1"), a2 = TestNode("a2")
        let link = try connect(a1, a2)
        a2.mesh.subscribe(room: "r")
        try pump((a1, link.dialed), (a2, link.accepted))
        for index in 1...5 { a1.mesh.publish(message("r", "old \(index)")) }
        try pump((a1, link.dialed), (a2, link.accepted))
        try link.dialed.close().wait()
        try link.accepted.close().wait()

        let restarted = TestNode("a2")
        restarted.mesh.subscribe(room: "r")
        let dialed = try a1.link(role: .dialer(expectedPeer: "a2"))
        let accepted = try restarted.link(role: .acceptor)
        try pump((a1, dialed), (restarted, accepted))
        a1.mesh.publish(message("r", "new"))
        let seen = try pump((a1, dialed), (restarted, accepted))
        #expect(restarted.delivery.delivered == [delivered("r", "new")])

        // What the restarted node's InboundSequence makes of the PUBs it got.
        var inbound = InboundSequence()
        inbound.peerConnected(epoch: a1.epoch)
        let verdicts = seen.aToB.compactMap { frame -> InboundSequence.Verdict? in
            if case .pub(let sequence, _, _) = frame { return inbound.accept(sequence) }
            return nil
        }
        #expect(verdicts == [.deliver(gap: 0)])
    }
}
