import ChatCore
import ClusterConfig
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOEmbedded
import NIOHTTP1

@testable import ChatServer

/// A relay (the mesh's side of `SessionRelay`) that records what the node asks of it, so a
/// test plays the owner: it answers, fails or closes by hand.
final class RecordingRelay: SessionRelay, @unchecked Sendable {  // unchecked: used from the test's one thread (embedded loop)
    struct Sent {
        var request: RelayedRequest
        var completion: @Sendable (Result<RelayReply, RelayFailure>) -> Void
    }
    struct Opened {
        var sid: String
        var origin: String?
        var onFrame: @Sendable (RelayFrameKind, ByteBuffer) -> Void
        var onClose: @Sendable (UInt16) -> Void
        var stream: RecordingStream
    }

    /// Sids that start with this name another node.
    let peerPrefix: String
    /// Whether `openStream` finds a live owner.
    var ownerReachable = true
    private(set) var sent: [Sent] = []
    private(set) var cancels = 0
    private(set) var opened: [Opened] = []

    init(peerPrefix: String = "PEER") {
        self.peerPrefix = peerPrefix
    }

    func isPeerSession(sid: String) -> Bool { sid.hasPrefix(peerPrefix) }

    func send(_ request: RelayedRequest, completion: @escaping @Sendable (Result<RelayReply, RelayFailure>) -> Void)
        -> @Sendable () -> Void {
        sent.append(Sent(request: request, completion: completion))
        return { [self] in cancels += 1 }
    }

    func openStream(sid: String, origin: String?, onFrame: @escaping @Sendable (RelayFrameKind, ByteBuffer) -> Void,
                    onClose: @escaping @Sendable (UInt16) -> Void) -> (any RelayStream)? {
        guard ownerReachable else { return nil }
        let stream = RecordingStream()
        opened.append(Opened(sid: sid, origin: origin, onFrame: onFrame, onClose: onClose, stream: stream))
        return stream
    }

    func setOwnerHandler(_ handler: any RelayOwnerHandler) {}
}

/// One end of a relayed stream that records what is sent on it and how it was closed.
final class RecordingStream: RelayStream, Sendable {
    private let state = NIOLockedValueBox<(frames: [(RelayFrameKind, ByteBuffer)], closes: [UInt16])>(([], []))

    var frames: [(RelayFrameKind, ByteBuffer)] { state.withLockedValue { $0.frames } }
    var closes: [UInt16] { state.withLockedValue { $0.closes } }
    /// The payloads sent, as text.
    var texts: [String] { frames.map { String(buffer: $0.1) } }

    func send(_ kind: RelayFrameKind, _ payload: ByteBuffer) {
        state.withLockedValue { $0.frames.append((kind, payload)) }
    }

    func close(code: UInt16) {
        state.withLockedValue { $0.closes.append(code) }
    }
}

/// One node on one embedded loop, as ChatNode builds it, with a recording relay.
final class RelayTestNode {
    let loop = EmbeddedEventLoop()
    let server: ServerContext
    let relay: RecordingRelay

    init(engine: EngineSettings = EngineSettings()) {
        relay = RecordingRelay()
        let metrics = ServerMetrics()
        let hub = RoomHub(
            eventLoops: [loop], fanout: LocalFanout(eventLoop: loop), metrics: metrics.chat,
            transportFramer: { packet, out in WebSocketWire.append(opcode: WebSocketWire.textOpcode, payload: packet, to: &out) }
        )
        server = ServerContext(
            nodeName: "test", engine: engine, limits: LimitSettings(), hub: hub, metrics: metrics,
            logger: Logger(label: "test"), eventLoops: [loop], relay: relay
        )
    }

    /// A client connection with the pipeline ChatNode gives each accepted socket.
    func connect() throws -> EmbeddedChannel {
        try connectedClientPipeline(server: server, loop: loop)
    }

    /// A polling session of this node, as a handshake GET makes it.
    func pollingSession(room: String = "r") -> EngineSession {
        let session = EngineSession(eventLoop: loop, transport: .polling, query: ["roomid": room], server: server)
        precondition(server.sessions.insert(session, limit: 100))
        session.open(webSocket: nil)
        return session
    }

    func settle() {
        for _ in 0..<5 {
            loop.run()
            loop.advanceTime(by: .milliseconds(1))
        }
    }

    /// Everything written to `channel` so far.
    static func outputBytes(_ channel: EmbeddedChannel) throws -> [UInt8] {
        var bytes: [UInt8] = []
        while let buffer = try channel.readOutbound(as: ByteBuffer.self) { bytes += buffer.readableBytesView }
        return bytes
    }

    /// Everything written to `channel` so far, as text.
    static func output(_ channel: EmbeddedChannel) throws -> String {
        String(decoding: try outputBytes(channel), as: UTF8.self)
    }

    /// One masked client frame (text by default).
    static func clientFrame(_ payload: [UInt8], opcode: UInt8 = 0x1) -> ByteBuffer {
        let mask: [UInt8] = [0x21, 0x43, 0x65, 0x07]
        var frame: [UInt8] = [0x80 | opcode]
        if payload.count < 126 {
            frame.append(0x80 | UInt8(payload.count))
        } else {
            frame += [0x80 | 126, UInt8(payload.count >> 8), UInt8(payload.count & 0xFF)]
        }
        frame += mask + payload.enumerated().map { $0.element ^ mask[$0.offset % 4] }
        return ByteBuffer(bytes: frame)
    }

    static let upgradeHeaders = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        + "Sec-WebSocket-Version: 13\r\n"
}

/// A relayed GET/POST as the mesh hands it to the owner, with the replies it got.
final class RecordedExchange: Sendable {
    private let replies = NIOLockedValueBox<[RelayReply]>([])
    let exchange: RelayExchange

    init() {
        let replies = self.replies
        exchange = RelayExchange { reply in replies.withLockedValue { $0.append(reply) } }
    }

    var all: [RelayReply] { replies.withLockedValue { $0 } }
    /// The one reply as (status, content type, body).
    var reply: (status: UInt16, contentType: String, body: String)? {
        all.first.map { ($0.status, $0.contentType, String(buffer: $0.body)) }
    }
}
