#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import NIOPosix
import Synchronization
import Testing
@testable import ChatBench

/// The bench client against a server with connection-state recovery on: broadcasts carry one
/// more, last argument (their offset), CONNECT replies carry a `pid`, and a sending run ends
/// each session with an explicit `41` so the server does not hold it.
@Suite struct RecoveryWireTests {
    @Test func scannerReadsBroadcastsThatCarryAnOffset() {
        let stamp = SayStamp(measured: true, sender: 7, sequence: 9, sentNanos: 123_456)
        let text = SayText.encode(stamp, payload: 64)
        let say = #"42["message",{"event":"broadcast_say","data":{"username":"b7","text":"\#(text)"}},"1k2.3f-9zz.1"]"#
        #expect(PacketScanner.scan(say) == .say(stamp))
        let join = #"42["message",{"event":"join","data":{"username":"b12"}},"1k2.40"]"#
        guard case .join(let range) = PacketScanner.scan(join) else {
            Issue.record("not a join")
            return
        }
        #expect(String(decoding: Array(join.utf8)[range], as: UTF8.self) == "b12")
        #expect(PacketScanner.scan(#"42["message",{"event":"broadcast_quit","data":{"username":"b1"}},"1k2.41"]"#) == .otherMessage)
        #expect(PacketScanner.scan(#"40{"sid":"AAAAAAAAAAAAAAAAAAAA","pid":"BBBBBBBBBBBBBBBBBBBB"}"#) == .connected)
    }

    @Test func aSendingClientCountsOffsetBroadcastsAndEndsWithDisconnect() throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { try? group.syncShutdownGracefully() }
        let server = ScriptedServer()
        let listener = try ServerBootstrap(group: group)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ScriptedServerHandler(server))
                }
            }
            .bind(host: "127.0.0.1", port: 0).wait()
        defer { try? listener.close().wait() }

        var options = BenchOptions()
        options.clients = 1
        options.rooms = 1
        options.senders = 1
        let shared = BenchShared(options: options)
        let client = ClientSlot()
        let channel = try ClientBootstrap(group: group)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    // Straight onto TCP: the upgrade is not what this test is about.
                    let connection = BenchConnection(index: 0, room: 0, shared: shared, stats: LoopStats(),
                                                     connectStartedAt: monotonicNanos())
                    try channel.pipeline.syncOperations.addHandler(connection)
                    client.bound.withLock { $0 = NIOLoopBound(connection, eventLoop: channel.eventLoop) }
                }
            }
            .connect(to: listener.localAddress!).wait()
        let bound = try #require(client.bound.withLock { $0 })

        let received = try waitFor { try channel.eventLoop.submit { bound.value.snapshot().received }.wait() == 1 }
        #expect(received, "the say with an offset argument was not counted")
        #expect(shared.joined.load() == 1)
        #expect(try channel.eventLoop.submit { bound.value.stats.unexpectedDeliveries + bound.value.stats.foreignSays }.wait() == 0)

        let closed = try #require(try channel.eventLoop.submit { bound.value.disconnect() }.wait())
        try closed.wait()
        #expect(try waitFor { server.frames.withLock { $0.last } == "closed" })
        let frames = server.frames.withLock { $0 }
        #expect(frames == ["text 40", #"text 42["join",{"username":"b0"}]"#, "text 41", "close 1000", "closed"])
    }

    private func waitFor(_ condition: () throws -> Bool) throws -> Bool {
        let deadline = monotonicNanos() + 5_000_000_000
        while monotonicNanos() < deadline {
            if try condition() { return true }
            usleep(10_000)
        }
        return try condition()
    }
}

/// The bench connection the client bootstrap made, for the test to reach on its loop.
final class ClientSlot: Sendable {
    let bound = Mutex<NIOLoopBound<BenchConnection>?>(nil)
}

/// What the scripted server saw of its one client, in order: `text <payload>`,
/// `close <status>`, `closed`.
final class ScriptedServer: Sendable {
    let frames = Mutex<[String]>([])
}

/// A server with recovery on, scripted for one client: Engine.IO open; CONNECT answered with a
/// sid and pid; a join answered with its echo and one say broadcast, both with an offset.
final class ScriptedServerHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let server: ScriptedServer
    private var pending = ByteBuffer()

    init(_ server: ScriptedServer) { self.server = server }

    func channelActive(context: ChannelHandlerContext) {
        send(#"0{"sid":"e1","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#, context)
    }

    func channelInactive(context: ChannelHandlerContext) {
        server.frames.withLock { $0.append("closed") }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        pending.writeBuffer(&bytes)
        while let (opcode, payload) = nextClientFrame() {
            if opcode == 0x8 {
                let status = payload.count >= 2 ? Int(payload[0]) << 8 | Int(payload[1]) : 0
                server.frames.withLock { $0.append("close \(status)") }
                continue
            }
            let text = String(decoding: payload, as: UTF8.self)
            server.frames.withLock { $0.append("text \(text)") }
            if text == "40" {
                send(#"40{"sid":"s1","pid":"p1"}"#, context)
            } else if text.hasPrefix(#"42["join""#) {
                send(#"42["message",{"event":"join","data":{"username":"b0"}},"1.1"]"#, context)
                let say = SayText.encode(SayStamp(measured: true, sender: 0, sequence: 0, sentNanos: monotonicNanos()), payload: 64)
                send(#"42["message",{"event":"broadcast_say","data":{"username":"b0","text":"\#(say)"}},"1.2"]"#, context)
            }
        }
    }

    /// One masked client frame off `pending`, unmasked; nil until a whole one is there.
    private func nextClientFrame() -> (UInt8, [UInt8])? {
        let b = Array(pending.readableBytesView)
        guard b.count >= 2 else { return nil }
        var length = Int(b[1] & 0x7F), at = 2
        if length == 126 {
            guard b.count >= 4 else { return nil }
            length = Int(b[2]) << 8 | Int(b[3])
            at = 4
        }
        guard b[1] & 0x80 != 0, b.count >= at + 4 + length else { return nil }
        let key = b[at..<(at + 4)].map { $0 }
        let payload = (0..<length).map { b[at + 4 + $0] ^ key[$0 & 3] }
        pending.moveReaderIndex(forwardBy: at + 4 + length)
        return (b[0] & 0x0F, payload)
    }

    /// One unmasked server text frame.
    private func send(_ text: String, _ context: ChannelHandlerContext) {
        let payload = Array(text.utf8)
        var out = context.channel.allocator.buffer(capacity: payload.count + 4)
        out.writeInteger(UInt8(0x81))
        if payload.count < 126 {
            out.writeInteger(UInt8(payload.count))
        } else {
            out.writeInteger(UInt8(126))
            out.writeInteger(UInt16(payload.count))
        }
        out.writeBytes(payload)
        context.writeAndFlush(wrapOutboundOut(out), promise: nil)
    }
}
