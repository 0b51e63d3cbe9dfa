import ChatCore
import ClusterConfig
import Logging
import NIOCore
import NIOEmbedded
import NIOHTTP1
import Testing

@testable import ChatServer

/// The Engine.IO behaviours the socket.io-protocol test suite checks and the reference (Node)
/// server shows, driven through the node's real pipeline (HTTP codec, upgrader, router) on
/// embedded channels and a virtual clock, with the suite's timing: ping 300 ms, pong 200 ms.
struct EngineReferenceBehaviourTests {
    /// One node on one embedded loop; every connection is an embedded channel on it.
    private final class Node {
        let loop = EmbeddedEventLoop()
        let server: ServerContext

        init(pingInterval: TimeAmount = .milliseconds(300), pingTimeout: TimeAmount = .milliseconds(200)) {
            var engine = EngineSettings()
            engine.pingInterval = pingInterval
            engine.pingTimeout = pingTimeout
            let metrics = ServerMetrics()
            let hub = RoomHub(eventLoops: [loop], fanout: LocalFanout(eventLoop: loop), metrics: metrics.chat)
            server = ServerContext(
                nodeName: "test", engine: engine, limits: LimitSettings(), hub: hub, metrics: metrics,
                logger: Logger(label: "test"), eventLoops: [loop]
            )
        }

        /// A connection with the pipeline ChatNode gives each accepted socket.
        func connect() throws -> EmbeddedChannel {
            try connectedClientPipeline(server: server, loop: loop)
        }

        func advance(toMs ms: Int64) {
            loop.advanceTime(to: .uptimeNanoseconds(UInt64(ms) * 1_000_000))
        }
    }

    private struct Response: Equatable {
        var status: Int
        var body: String
    }

    private static func send(_ text: String, on channel: EmbeddedChannel) throws {
        try channel.writeInbound(ByteBuffer(string: text))
        (channel.eventLoop as! EmbeddedEventLoop).run()
    }

    /// Everything the node wrote to `channel` so far.
    private static func written(_ channel: EmbeddedChannel) throws -> [UInt8] {
        (channel.eventLoop as! EmbeddedEventLoop).run()
        var bytes: [UInt8] = []
        while let buffer = try channel.readOutbound(as: ByteBuffer.self) {
            bytes += buffer.readableBytesView
        }
        return bytes
    }

    /// The HTTP responses written to `channel` so far (bodies by Content-Length).
    private static func responses(_ channel: EmbeddedChannel) throws -> [Response] {
        var text = Substring(String(decoding: try written(channel), as: UTF8.self))
        var result: [Response] = []
        while let headEnd = text.range(of: "\r\n\r\n") {
            let head = text[..<headEnd.lowerBound]
            let status = Int(head.split(separator: " ")[1]) ?? 0
            let length = head.split(separator: "\r\n")
                .first { $0.lowercased().hasPrefix("content-length:") }
                .flatMap { Int($0.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) } ?? 0
            let bodyStart = headEnd.upperBound
            let bodyEnd = text.utf8.index(bodyStart, offsetBy: length)
            result.append(Response(status: status, body: String(text[bodyStart..<bodyEnd])))
            text = text[bodyEnd...]
        }
        return result
    }

    private static func get(_ query: String) -> String {
        "GET /socket.io/?EIO=4&\(query) HTTP/1.1\r\nHost: test\r\n\r\n"
    }

    private static func post(_ query: String, body: String) -> String {
        "POST /socket.io/?EIO=4&\(query) HTTP/1.1\r\nHost: test\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)"
    }

    /// Opens a polling session; returns its sid.
    private static func openPolling(_ node: Node) throws -> String {
        let channel = try node.connect()
        try send(get("transport=polling"), on: channel)
        let open = try #require(try responses(channel).first)
        #expect(open.status == 200)
        let sidStart = try #require(open.body.range(of: #""sid":""#)).upperBound
        return String(open.body[sidStart...].prefix { $0 != "\"" })
    }

    /// A masked client text frame (RFC 6455 §5.3).
    private static func clientFrame(_ text: String, opcode: UInt8 = 0x1) -> ByteBuffer {
        let payload = Array(text.utf8)
        precondition(payload.count < 126)
        let mask: [UInt8] = [0x12, 0x34, 0x56, 0x78]
        var frame: [UInt8] = [0x80 | opcode, 0x80 | UInt8(payload.count)] + mask
        frame += payload.enumerated().map { $0.element ^ mask[$0.offset % 4] }
        return ByteBuffer(bytes: frame)
    }

    /// The frames the server wrote (unmasked, short): opcode and payload.
    private static func serverFrames(_ bytes: [UInt8]) -> [(opcode: UInt8, payload: [UInt8])] {
        var frames: [(UInt8, [UInt8])] = []
        var index = 0
        while index + 2 <= bytes.count {
            let length = Int(bytes[index + 1] & 0x7F)
            precondition(length < 126, "test frames are short")
            frames.append((bytes[index] & 0x0F, Array(bytes[index + 2..<index + 2 + length])))
            index += 2 + length
        }
        return frames
    }

    private static func upgradeRequest(sid: String) -> String {
        "GET /socket.io/?EIO=4&transport=websocket&sid=\(sid) HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\n"
            + "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    }

    /// Opens a WebSocket for `sid`; returns it with what the server wrote after its 101.
    private static func openWebSocket(_ node: Node, sid: String) throws -> (EmbeddedChannel, status: Int, after: [UInt8]) {
        let channel = try node.connect()
        do {
            try send(upgradeRequest(sid: sid), on: channel)
        } catch WebSocketUpgrade.UpgradeError.refused {
            // NIO's upgrade handler reports a refused upgrade down the pipeline (an embedded
            // channel rethrows it here) and hands the request on to the router, which answers.
        }
        let bytes = try written(channel)
        let text = String(decoding: bytes, as: UTF8.self)
        let status = Int(text.split(separator: " ").dropFirst().first ?? "") ?? 0
        guard status == 101, let headEnd = text.utf8.firstRange(of: "\r\n\r\n".utf8) else { return (channel, status, []) }
        let headLength = text.utf8.distance(from: text.utf8.startIndex, to: headEnd.upperBound)
        return (channel, status, Array(bytes[headLength...]))
    }

    // MARK: (a) ping timeout

    /// socket.io-protocol "should close the session upon ping timeout": a GET after
    /// pingInterval + pingTimeout gets 400. The session opens mid-tick of the heartbeat wheel
    /// (tick 20 ms), so the wheel alone would close it up to a tick late; the GET still finds
    /// it closed, because the session checks its deadline first.
    @Test func aPollingClientThatStopsPollingIsGoneAtIntervalPlusTimeout() throws {
        let node = Node()
        node.advance(toMs: 37)
        let late = try Self.openPolling(node)
        let justInTime = try Self.openPolling(node)

        node.advance(toMs: 37 + 499)
        let before = try node.connect()
        try Self.send(Self.get("transport=polling&sid=\(justInTime)"), on: before)
        #expect(try Self.responses(before) == [Response(status: 200, body: "2")], "the ping, before the deadline")

        node.advance(toMs: 37 + 500)
        let after = try node.connect()
        try Self.send(Self.get("transport=polling&sid=\(late)"), on: after)
        #expect(try Self.responses(after).map(\.status) == [400])
        #expect(node.server.sessions.session(late) == nil)
    }

    @Test func aPongInTimeKeepsThePollingSessionAndTheNextPingIsOneIntervalAfterIt() throws {
        let node = Node()
        let sid = try Self.openPolling(node)
        let poll = try node.connect()
        try Self.send(Self.get("transport=polling&sid=\(sid)"), on: poll)
        node.advance(toMs: 300)
        #expect(try Self.responses(poll) == [Response(status: 200, body: "2")])
        node.advance(toMs: 350)
        let pong = try node.connect()
        try Self.send(Self.post("transport=polling&sid=\(sid)", body: "3"), on: pong)
        #expect(try Self.responses(pong) == [Response(status: 200, body: "ok")])

        try Self.send(Self.get("transport=polling&sid=\(sid)"), on: poll)
        node.advance(toMs: 649)
        #expect(try Self.responses(poll).isEmpty)
        node.advance(toMs: 670)
        #expect(try Self.responses(poll) == [Response(status: 200, body: "2")])
    }

    /// With the default-like 1 s / 1 s, a silent session is gone by its deadline plus one tick
    /// (100 ms) even when nothing asks: the wheel wakes on tick boundaries.
    @Test func theWheelClosesASilentWebSocketWithinATickOfItsDeadline() throws {
        let node = Node(pingInterval: .seconds(1), pingTimeout: .seconds(1))
        node.advance(toMs: 50)
        let channel = try node.connect()
        try Self.send(Self.upgradeRequest(sid: "").replacingOccurrences(of: "&sid=", with: ""), on: channel)
        _ = try Self.written(channel)
        node.advance(toMs: 50 + 1_000 + 100)
        #expect(Self.serverFrames(try Self.written(channel)).map(\.payload) == [Array("2".utf8)])
        node.advance(toMs: 50 + 2_000 - 1)
        #expect(try Self.written(channel).isEmpty)
        node.advance(toMs: 50 + 2_000 + 100)
        let close = Self.serverFrames(try Self.written(channel))
        #expect(close.map(\.opcode) == [0x8])
    }

    // MARK: (b) the client's close over polling

    /// socket.io-protocol "should forcefully close the session": a POST of `1` while a GET is
    /// pending releases that GET with a noop `6`; later requests get 400.
    @Test func aClientsClosePacketReleasesThePendingPollWithANoop() throws {
        let node = Node()
        let sid = try Self.openPolling(node)
        let poll = try node.connect()
        try Self.send(Self.get("transport=polling&sid=\(sid)"), on: poll)
        #expect(try Self.responses(poll).isEmpty)

        let push = try node.connect()
        try Self.send(Self.post("transport=polling&sid=\(sid)", body: "1"), on: push)
        #expect(try Self.responses(push) == [Response(status: 200, body: "ok")])
        #expect(try Self.responses(poll) == [Response(status: 200, body: "6")])

        let later = try node.connect()
        try Self.send(Self.get("transport=polling&sid=\(sid)"), on: later)
        #expect(try Self.responses(later).map(\.status) == [400])
    }

    /// A close the client did not ask for still tells it with `1`: here a second GET while
    /// one is pending (the reference closes such a session as a broken client).
    @Test func aServerSideCloseReleasesThePendingPollWithAClosePacket() throws {
        let node = Node()
        let sid = try Self.openPolling(node)
        let poll = try node.connect()
        try Self.send(Self.get("transport=polling&sid=\(sid)"), on: poll)
        let overlapping = try node.connect()
        try Self.send(Self.get("transport=polling&sid=\(sid)"), on: overlapping)
        #expect(try Self.responses(overlapping).map(\.status) == [400])
        #expect(try Self.responses(poll) == [Response(status: 200, body: "1")])
    }

    // MARK: (c) a WebSocket for a session that upgraded already

    /// socket.io-protocol "should ignore WebSocket connection with same sid after upgrade": the
    /// WebSocket handshake completes, then the socket is closed; the upgraded one goes on.
    @Test func aSecondUpgradeOfAnUpgradedSessionIsAcceptedThenClosed() throws {
        let node = Node()
        let sid = try Self.openPolling(node)
        let (first, firstStatus, _) = try Self.openWebSocket(node, sid: sid)
        #expect(firstStatus == 101)
        try first.writeInbound(Self.clientFrame("2probe"))
        node.loop.run()
        #expect(Self.serverFrames(try Self.written(first)).map(\.payload) == [Array("3probe".utf8)])
        try first.writeInbound(Self.clientFrame("5"))
        node.loop.run()

        let (second, secondStatus, after) = try Self.openWebSocket(node, sid: sid)
        #expect(secondStatus == 101)
        let frames = Self.serverFrames(after)
        #expect(frames.map(\.opcode) == [0x8])
        #expect(frames.first.map { Array($0.payload.prefix(2)) } == [0x03, 0xF0], "1008 policy violation")
        #expect(!second.isActive)

        node.advance(toMs: 300)
        #expect(Self.serverFrames(try Self.written(first)).map(\.payload) == [Array("2".utf8)], "the upgraded socket still serves")
        #expect(first.isActive)
    }

    @Test func aSecondProbeWhileUpgradingIsAcceptedThenClosedAndTheFirstCompletes() throws {
        let node = Node()
        let sid = try Self.openPolling(node)
        let (first, _, _) = try Self.openWebSocket(node, sid: sid)
        let (second, secondStatus, after) = try Self.openWebSocket(node, sid: sid)
        #expect(secondStatus == 101)
        #expect(Self.serverFrames(after).map(\.opcode) == [0x8])
        #expect(!second.isActive)

        try first.writeInbound(Self.clientFrame("2probe"))
        node.loop.run()
        #expect(Self.serverFrames(try Self.written(first)).map(\.payload) == [Array("3probe".utf8)])
    }

    @Test func anUpgradeForAnUnknownSidIsRefusedWith400() throws {
        let node = Node()
        let (_, status, _) = try Self.openWebSocket(node, sid: "AAAAAAAAAAAAAAAAAAAA")
        #expect(status == 400)
    }
}
