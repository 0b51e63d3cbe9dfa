import ChatCore
import ClusterConfig
import NIOCore
import NIOEmbedded
import Testing

@testable import ChatServer

/// The relay's side (docs/RELAY.md): a client's polling request or WebSocket for a session
/// another node owns goes to that node, and the client gets the owner's answer as if it had
/// come from here. Driven through the node's real pipeline; the test plays the owner.
struct RelayedClientRequestTests {
    private static let peerSid = "PEERxxxxxxxxxxxxxxxx"
    private static let unknownSid = #"{"code":1,"message":"Session ID unknown"}"#

    private static func poll(_ method: String, sid: String = peerSid, body: String = "", origin: String = "https://chat.example") -> String {
        "\(method) /socket.io/?EIO=4&transport=polling&sid=\(sid) HTTP/1.1\r\nHost: test\r\nOrigin: \(origin)\r\n"
            + "Content-Length: \(body.utf8.count)\r\n\r\n\(body)"
    }

    @Test func aPollForAPeersSessionIsAnsweredWithTheOwnersReplyAndLocalCorsHeaders() throws {
        let node = RelayTestNode()
        let channel = try node.connect()
        try channel.writeInbound(ByteBuffer(string: Self.poll("POST", body: "40")))
        node.settle()
        let sent = try #require(node.relay.sent.first)
        #expect(sent.request == RelayedRequest(kind: .post, sid: Self.peerSid, origin: "https://chat.example", body: ByteBuffer(string: "40")))
        #expect(try RelayTestNode.output(channel).isEmpty, "held until the owner answers")

        sent.completion(.success(RelayReply(status: 200, contentType: "text/html", body: ByteBuffer(string: "ok"))))
        node.settle()
        let response = try RelayTestNode.output(channel)
        #expect(response.hasPrefix("HTTP/1.1 200 OK\r\n"))
        #expect(response.contains("Content-Type: text/html\r\n") && response.hasSuffix("\r\n\r\nok"))
        #expect(response.contains("Access-Control-Allow-Origin: https://chat.example\r\n"))

        try channel.writeInbound(ByteBuffer(string: Self.poll("GET")))
        node.settle()
        #expect(node.relay.sent.count == 2 && node.relay.sent[1].request.kind == .get && node.relay.sent[1].request.body.readableBytes == 0)
    }

    @Test func anOwnerThatCannotBeReachedGivesTheUsual400() throws {
        let node = RelayTestNode()
        let channel = try node.connect()
        try channel.writeInbound(ByteBuffer(string: Self.poll("GET")))
        node.settle()
        try #require(node.relay.sent.count == 1)
        node.relay.sent[0].completion(.failure(.peerDown))
        node.settle()
        let response = try RelayTestNode.output(channel)
        #expect(response.hasPrefix("HTTP/1.1 400 Bad Request\r\n") && response.hasSuffix(Self.unknownSid))
    }

    @Test func aSidNamingNoPeerIsNotRelayed() throws {
        let node = RelayTestNode()
        let channel = try node.connect()
        try channel.writeInbound(ByteBuffer(string: Self.poll("GET", sid: "NOPExxxxxxxxxxxxxxxx")))
        node.settle()
        #expect(node.relay.sent.isEmpty)
        #expect(try RelayTestNode.output(channel).hasSuffix(Self.unknownSid))
    }

    @Test func aClientThatGoesWhileItsRelayedPollIsHeldCancelsIt() throws {
        let node = RelayTestNode()
        let channel = try node.connect()
        try channel.writeInbound(ByteBuffer(string: Self.poll("GET")))
        node.settle()
        #expect(node.relay.cancels == 0)
        _ = try channel.finish()
        node.settle()
        #expect(node.relay.cancels == 1)
    }

    @Test func anAnsweredPollIsNotCancelledWhenItsConnectionCloses() throws {
        let node = RelayTestNode()
        let channel = try node.connect()
        try channel.writeInbound(ByteBuffer(string: Self.poll("GET")))
        node.settle()
        node.relay.sent[0].completion(.success(RelayReply(status: 200, contentType: "text/plain; charset=UTF-8", body: ByteBuffer(string: "6"))))
        node.settle()
        _ = try channel.finish()
        node.settle()
        #expect(node.relay.cancels == 0)
    }

    @Test func aPostOverMaxPayloadIsRefusedBeforeItIsRelayed() throws {
        var engine = EngineSettings()
        engine.maxPayload = 16
        let node = RelayTestNode(engine: engine)
        let channel = try node.connect()
        try channel.writeInbound(ByteBuffer(string: Self.poll("POST", body: String(repeating: "4", count: 17))))
        node.settle()
        #expect(node.relay.sent.isEmpty)
        #expect(try RelayTestNode.output(channel).hasPrefix("HTTP/1.1 413"))
    }

    private static func upgrade(_ channel: EmbeddedChannel, node: RelayTestNode) throws -> String {
        do {
            try channel.writeInbound(ByteBuffer(string:
                "GET /socket.io/?EIO=4&transport=websocket&sid=\(peerSid) HTTP/1.1\r\nHost: test\r\n\(RelayTestNode.upgradeHeaders)\r\n"))
        } catch WebSocketUpgrade.UpgradeError.refused {
            // A refused upgrade is reported down the pipeline (rethrown here); the router answers.
        }
        node.settle()
        return try RelayTestNode.output(channel)
    }

    @Test func aWebSocketForAPeersSessionPipesPacketsBothWays() throws {
        let node = RelayTestNode()
        let channel = try node.connect()
        #expect(try Self.upgrade(channel, node: node).hasPrefix("HTTP/1.1 101"))
        let opened = try #require(node.relay.opened.first)
        #expect(opened.sid == Self.peerSid)

        try channel.writeInbound(RelayTestNode.clientFrame(Array("2probe".utf8)))
        try channel.writeInbound(RelayTestNode.clientFrame([1, 2, 3], opcode: 0x2))
        node.settle()
        #expect(opened.stream.frames.map(\.0) == [.text, .binary])
        #expect(opened.stream.texts.first == "2probe" && opened.stream.frames.last.map { Array($0.1.readableBytesView) } == [1, 2, 3])

        let framed: [UInt8] = [0x81, 6] + Array("3probe".utf8)
        opened.onFrame(.framed, ByteBuffer(bytes: framed))
        node.settle()
        #expect(try RelayTestNode.outputBytes(channel) == framed, "the owner's bytes, verbatim")

        opened.onClose(4404)
        node.settle()
        let close = try RelayTestNode.outputBytes(channel)
        #expect(close.prefix(4) == [0x88, 2, 0x11, 0x34], "a close frame with the owner's code")
        #expect(!channel.isActive)
        #expect(opened.stream.closes.isEmpty, "the owner ended it: nothing to tell it")
    }

    @Test func aClientThatDoesNotReadTheOwnersFramesIsCutOffAtTheOutboundBound() throws {
        let node = RelayTestNode()
        let channel = try node.connect()
        _ = try Self.upgrade(channel, node: node)
        let opened = try #require(node.relay.opened.first)
        channel.isWritable = false  // over the high watermark, which is outbound_buffer
        opened.onFrame(.framed, ByteBuffer(bytes: [0x81, 1, 0x36]))
        node.settle()
        #expect(opened.stream.closes == [1000])
        #expect(try RelayTestNode.outputBytes(channel).first == 0x88, "a close frame, not the frame")
        #expect(!channel.isActive)
    }

    @Test func aClientPacketTheLocalPathWouldRefuseIsNotRelayed() throws {
        let node = RelayTestNode()
        let channel = try node.connect()
        _ = try Self.upgrade(channel, node: node)
        let opened = try #require(node.relay.opened.first)
        try channel.writeInbound(RelayTestNode.clientFrame(Array("9nonsense".utf8)))
        node.settle()
        #expect(opened.stream.frames.isEmpty)
        #expect(opened.stream.closes == [1000], "the client's connection closed: the stream ends")
    }

    @Test func theClientClosingEndsTheStream() throws {
        let node = RelayTestNode()
        let channel = try node.connect()
        _ = try Self.upgrade(channel, node: node)
        let opened = try #require(node.relay.opened.first)
        _ = try channel.finish()
        node.settle()
        #expect(opened.stream.closes == [1000])
    }

    @Test func aWebSocketWhoseOwnerCannotBeReachedGetsTheUnknownSid400() throws {
        let node = RelayTestNode()
        node.relay.ownerReachable = false
        let channel = try node.connect()
        let response = try Self.upgrade(channel, node: node)
        #expect(response.hasPrefix("HTTP/1.1 400") && response.hasSuffix(Self.unknownSid))
    }
}
