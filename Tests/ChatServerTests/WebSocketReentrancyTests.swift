import ChatCore
import ClusterConfig
import Logging
import NIOCore
import NIOEmbedded
import NIOHTTP1
import Testing

@testable import ChatServer

/// A flush can read the socket: NIO's `flushNow` may call `channelRead` again, on the same
/// handler, before the write that flushed returns. A bench client ending its sessions with `41`
/// crashed a node that way (the leave flushed the room's batch to the same channel, NIO read
/// the next bytes, and the WebSocket handler's frame reader was entered twice).
struct WebSocketReentrancyTests {
    /// At the head of the pipeline: on the first flush it sees, it hands `injected` up the
    /// pipeline as if NIO had read it during the flush.
    private final class ReadsDuringFlush: ChannelDuplexHandler {
        typealias InboundIn = ByteBuffer
        typealias OutboundIn = ByteBuffer
        var injected: ByteBuffer?

        func flush(context: ChannelHandlerContext) {
            if let bytes = injected {
                injected = nil
                context.fireChannelRead(NIOAny(bytes))
            }
            context.flush()
        }
    }

    private static func clientFrame(_ text: String, opcode: UInt8) -> ByteBuffer {
        let payload = Array(text.utf8)
        let mask: [UInt8] = [0x12, 0x34, 0x56, 0x78]
        var frame: [UInt8] = [0x80 | opcode, 0x80 | UInt8(payload.count)] + mask
        frame += payload.enumerated().map { $0.element ^ mask[$0.offset % 4] }
        return ByteBuffer(bytes: frame)
    }

    /// The server's frames in `bytes` after the upgrade response: (opcode, payload) each.
    private static func serverFrames(_ bytes: [UInt8]) -> [(UInt8, String)] {
        var frames: [(UInt8, String)] = []
        var index = 0
        while index + 2 <= bytes.count {
            let length = Int(bytes[index + 1] & 0x7F)
            frames.append((bytes[index] & 0x0F, String(decoding: bytes[index + 2..<index + 2 + length], as: UTF8.self)))
            index += 2 + length
        }
        return frames
    }

    private static func drain(_ channel: EmbeddedChannel) throws -> [UInt8] {
        (channel.eventLoop as! EmbeddedEventLoop).run()
        var bytes: [UInt8] = []
        while let buffer = try channel.readOutbound(as: ByteBuffer.self) { bytes += buffer.readableBytesView }
        return bytes
    }

    @Test func bytesReadDuringAFlushAreTakenAfterTheFrameThatFlushedInOrder() throws {
        let loop = EmbeddedEventLoop()
        let metrics = ServerMetrics()
        let hub = RoomHub(eventLoops: [loop], fanout: LocalFanout(eventLoop: loop), metrics: metrics.chat)
        let server = ServerContext(nodeName: "test", engine: EngineSettings(), limits: LimitSettings(), hub: hub,
                                   metrics: metrics, logger: Logger(label: "test"), eventLoops: [loop])
        let channel = try connectedClientPipeline(server: server, loop: loop)
        defer { _ = try? channel.finish() }
        try channel.writeInbound(ByteBuffer(string:
            "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\n"
                + "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"))
        let upgrade = String(decoding: try Self.drain(channel), as: UTF8.self)
        #expect(upgrade.hasPrefix("HTTP/1.1 101"))
        let reentry = ReadsDuringFlush()
        try channel.pipeline.syncOperations.addHandler(reentry, position: .first)

        // The first ping's pong is flushed at once; during that flush the second ping "arrives".
        reentry.injected = Self.clientFrame("second", opcode: 0x9)
        try channel.writeInbound(Self.clientFrame("first", opcode: 0x9))
        let pongs = Self.serverFrames(try Self.drain(channel)).filter { $0.0 == 0xA }.map(\.1)
        #expect(pongs == ["first", "second"])
        #expect(channel.isActive)
    }
}
