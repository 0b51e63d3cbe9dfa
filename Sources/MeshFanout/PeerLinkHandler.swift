import Logging
import NIOCore
import NIOSSL
import NIOTLS

/// One TCP connection to another node. It frames the byte stream, runs the handshake, and once
/// authenticated hands every frame to `MeshFanout`. Before authentication frames are limited
/// to a few KiB and must arrive within a deadline, so a stranger can hold little.
/// On a TLS mesh it sits behind NIOSSL: the deadline covers the TLS handshake too, HELLO waits
/// for that handshake, and the peer's certificate must name the node of the link (the one we
/// dialed, or the one an accepted dialer claims in HELLO) before any frame has an effect.
/// Runs on the mesh event loop, like all mesh state.
final class PeerLinkHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    static let handshakeFrameLimit = 4096
    static let handshakeTimeout = TimeAmount.seconds(3)

    private unowned let mesh: MeshFanout
    private var handshake: MeshHandshake
    private var decoder: MeshFrameDecoder
    private let establishedFrameLimit: Int
    private var inbound: ByteBuffer?
    private var handshakeTimer: Scheduled<Void>?
    private(set) var channel: (any Channel)?
    private(set) var peer: PeerState?
    private var closed = false
    private var handshakePending = true
    var needsFlush = false
    /// The peer this link was dialed to, nil for accepted links.
    let dialedPeer: String?
    /// The relayed requests and streams on this link, both ways (set when it authenticates).
    var relay: MeshRelayLink?
    /// NIOSSL is in front of this handler.
    private let tls: Bool

    init(mesh: MeshFanout, handshake: MeshHandshake, maxFrame: Int, tls: Bool = false) {
        self.mesh = mesh
        self.tls = tls
        self.handshake = handshake
        self.decoder = MeshFrameDecoder(maxFrameLength: Self.handshakeFrameLimit)
        self.establishedFrameLimit = maxFrame
        if case .dialer(let expected) = handshake.role { dialedPeer = expected } else { dialedPeer = nil }
    }

    func handlerAdded(context: ChannelHandlerContext) {
        channel = context.channel
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        endHandshake()
    }

    private func endHandshake() {
        guard handshakePending else { return }
        handshakePending = false
        mesh.handshakeEnded(self)
    }

    var remoteDescription: String { channel?.remoteAddress.map { "\($0)" } ?? "?" }

    func channelActive(context: ChannelHandlerContext) {
        guard !closed else { return context.close(promise: nil) }
        handshakeTimer = context.eventLoop.assumeIsolated().scheduleTask(in: Self.handshakeTimeout) { [weak self] in
            self?.fail("handshake timed out", metricReason: "handshake_timeout")
        }
        // On TLS, HELLO goes out once the peer's certificate is known (userInboundEventTriggered).
        if !tls { send(handshake.hello, flush: true) }
        context.fireChannelActive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard tls, !closed, let event = event as? TLSUserEvent, case .handshakeCompleted = event else {
            return context.fireUserInboundEventTriggered(event)
        }
        // A dialer knows at once whom it wanted; an acceptor learns it from HELLO (runHandshake).
        if let dialedPeer, let problem = MeshPeerIdentity.problem(certificate: peerCertificate, node: dialedPeer) {
            return refuse(.nameMismatch(problem))
        }
        send(handshake.hello, flush: true)
    }

    /// The verified certificate of the peer (TLS links, after the TLS handshake).
    private var peerCertificate: NIOSSLCertificate? {
        try? channel?.pipeline.syncOperations.nioSSL_peerCertificate()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var chunk = unwrapInboundIn(data)
        peer?.metrics.bytesIn.increment(by: Int64(chunk.readableBytes))
        if inbound == nil { inbound = chunk } else { inbound!.writeBuffer(&chunk) }
        while !closed, inbound != nil {
            let frame: MeshFrame?
            do {
                frame = try decoder.next(from: &inbound!)
            } catch {
                return fail("bad frame: \(error)", metricReason: "bad_frame")
            }
            guard let frame else { break }
            if let peer {
                peer.metrics.framesIn.increment()
                mesh.received(frame, from: peer, link: self)
            } else {
                runHandshake(frame)
            }
        }
        if inbound?.readableBytes == 0 { inbound = nil } else { inbound?.discardReadBytes() }
    }

    private func runHandshake(_ frame: MeshFrame) {
        if tls, dialedPeer == nil, case .hello(let hello) = frame,
           let problem = MeshPeerIdentity.problem(certificate: peerCertificate, node: hello.node) {
            return refuse(.nameMismatch(problem))
        }
        if case .goodbye(let reason) = frame {
            // The peer refused this link before it came up (this node is not in its cluster.conf
            // yet, a wrong secret, its pending-handshake cap): its reason is the one to log.
            return fail("refused by the peer: \(reason.prefix(1024))", metricReason: "peer_refused")
        }
        switch handshake.receive(frame, resume: { self.mesh.resumePoint(for: $0) }) {
        case .send(let reply):
            send(reply, flush: true)
        case .wait:
            break
        case .established(let established, let reply):
            if let reply { send(reply, flush: false) }
            handshakeTimer?.cancel()
            endHandshake()
            decoder.maxFrameLength = establishedFrameLimit
            // linkEstablished binds this link to its peer (`bind(to:)`) before writing anything.
            guard mesh.linkEstablished(self, established) != nil else {
                // Removed by a reload while this link authenticated.
                return fail(MeshHandshake.unknownPeer(established.peer), metricReason: "unknown_peer")
            }
        case .reject(let reason):
            fail(reason, metricReason: handshake.rejectMetricReason)
        }
    }

    /// The link is authenticated as `peer`'s. From here on every frame is counted in the peer's
    /// metrics: what link-up writes (SNAPSHOT, SESSION records, resent PUBs) and, read in, the
    /// bytes that came in the chunk that completed the handshake, after its last handshake frame.
    func bind(to peer: PeerState) {
        self.peer = peer
        if let unread = inbound?.readableBytes, unread > 0 { peer.metrics.bytesIn.increment(by: Int64(unread)) }
    }

    func channelInactive(context: ChannelHandlerContext) {
        closed = true
        handshakeTimer?.cancel()
        mesh.linkClosed(self)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        if peer == nil, let refusal = MeshLinkRefusal(error: error) {
            return refuse(refusal)
        }
        mesh.logger.debug("mesh link error", metadata: ["remote": "\(remoteDescription)", "error": "\(error)"])
        context.close(promise: nil)
    }

    // MARK: Writing

    func send(_ frame: MeshFrame, flush: Bool) {
        guard let channel, !closed else { return }
        write(MeshFrameCodec.encode(frame, allocator: channel.allocator), flush: flush)
    }

    /// Writes an encoded frame; without `flush` the mesh flushes once at the end of the tick.
    func write(_ frame: ByteBuffer, flush: Bool) {
        guard let channel, !closed else { return }
        if let peer {
            peer.metrics.framesOut.increment()
            peer.metrics.bytesOut.increment(by: Int64(frame.readableBytes))
        }
        if flush {
            channel.writeAndFlush(frame, promise: nil)
        } else {
            channel.write(frame, promise: nil)
            if !needsFlush {
                needsFlush = true
                mesh.scheduleFlush(self)
            }
        }
    }

    func flushNow() {
        needsFlush = false
        channel?.flush()
    }

    /// Closes the link, telling the peer why first.
    func close(reason: String) {
        guard !closed, let channel else { return }
        if channel.isActive { send(.goodbye(reason), flush: true) }
        closed = true
        channel.close(promise: nil)
    }

    private func refuse(_ refusal: MeshLinkRefusal) {
        fail(refusal.reason, metricReason: refusal.metricReason)
    }

    private func fail(_ reason: String, metricReason: String) {
        guard !closed else { return }
        mesh.logger.warning("mesh link refused", metadata: ["remote": "\(remoteDescription)", "reason": "\(reason)",
                                                            "reject": "\(metricReason)",
                                                            "peer": "\(peer?.name ?? dialedPeer ?? "unauthenticated")"])
        mesh.metrics.rejected(metricReason)
        close(reason: reason)
    }
}
