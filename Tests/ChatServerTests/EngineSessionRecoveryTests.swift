import ChatCore
import ClusterConfig
import Logging
import NIOCore
import NIOEmbedded
import NIOHTTP1
import SocketIO
import Testing

@testable import ChatServer

/// Connection-state recovery as a client sees it on one node: the CONNECT exchange, offsets on
/// broadcasts, a transport close that holds the session, `41` that ends it, a takeover, bad
/// auth. Driven through the node's real pipeline on embedded WebSocket channels, one loop (which
/// is also the store's, so every hop runs inline or as the loop's next task).
@Suite("EngineSession recovery")
struct EngineSessionRecoveryTests {
    private final class Node {
        let loop: EmbeddedEventLoop
        let server: ServerContext
        let store: RecoveryStore?

        /// `holdRooms`: as for a Redis fanout, held sessions keep their rooms subscribed.
        init(recovery: Bool = true, holdRooms: TimeAmount? = nil, sessionsOutliveNode: Bool = false) {
            let loop = EmbeddedEventLoop()
            self.loop = loop
            let metrics = ServerMetrics(recovery: recovery)
            store = metrics.recovery.map {
                RecoveryStore(policy: RecoveryPolicy(maxDisconnection: .seconds(60)), eventLoop: loop, localNode: "test",
                              epoch: 0x1234_5678_9abc, metrics: $0)
            }
            let hub = RoomHub(
                eventLoops: [loop], fanout: LocalFanout(eventLoop: loop), metrics: metrics.chat,
                transportFramer: { packet, out in WebSocketWire.append(opcode: WebSocketWire.textOpcode, payload: packet, to: &out) },
                recovery: store
            )
            server = ServerContext(
                nodeName: "test", engine: EngineSettings(), limits: LimitSettings(), hub: hub, metrics: metrics,
                logger: Logger(label: "test"), eventLoops: [loop], recovery: store,
                heldRooms: holdRooms.map { HeldRoomInterest(hub: hub, holdFor: $0) }, sessionsOutliveNode: sessionsOutliveNode
            )
        }

        var metrics: RecoveryMetrics.Snapshot { store!.metrics.snapshot }

        /// Lets every queued task and write round run.
        func settle() {
            for _ in 0..<5 {
                loop.run()
                loop.advanceTime(by: .milliseconds(20))
            }
        }
    }

    /// One WebSocket-born Engine.IO session as a raw client.
    private final class Client {
        let channel: EmbeddedChannel
        let node: Node
        private var unread: [UInt8] = []
        /// Text frames received, in order, after the Engine.IO open packet.
        private(set) var texts: [String] = []
        private(set) var closeFrames = 0
        /// The Engine.IO session id from the open packet.
        private(set) var engineSID = ""

        init(_ node: Node, room: String = "r") throws {
            self.node = node
            channel = try connectedClientPipeline(server: node.server, loop: node.loop)
            try channel.writeInbound(ByteBuffer(string:
                "GET /socket.io/?EIO=4&transport=websocket&roomid=\(room) HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\n"
                    + "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"))
            node.settle()
            let head = try read()
            let text = String(decoding: head, as: UTF8.self)
            guard text.hasPrefix("HTTP/1.1 101"), let end = text.utf8.firstRange(of: "\r\n\r\n".utf8) else {
                throw ClientError.notUpgraded(text)
            }
            unread = Array(head[text.utf8.distance(from: text.utf8.startIndex, to: end.upperBound)...])
            let open = try #require(receive().first)
            #expect(open.hasPrefix("0{"))
            engineSID = try #require(try JSONParser.parse(open.dropFirst())["sid"]?.stringValue)
            texts.removeAll()
        }

        enum ClientError: Error { case notUpgraded(String) }

        private func read() throws -> [UInt8] {
            var bytes: [UInt8] = []
            while let buffer = try channel.readOutbound(as: ByteBuffer.self) { bytes += buffer.readableBytesView }
            return bytes
        }

        /// Sends one Engine.IO text packet as a masked frame.
        func send(_ text: String) throws {
            let payload = Array(text.utf8)
            let mask: [UInt8] = [0x12, 0x34, 0x56, 0x78]
            var frame: [UInt8] = [0x81]
            if payload.count < 126 {
                frame.append(0x80 | UInt8(payload.count))
            } else {
                frame += [0x80 | 126, UInt8(payload.count >> 8), UInt8(payload.count & 0xFF)]
            }
            frame += mask + payload.enumerated().map { $0.element ^ mask[$0.offset % 4] }
            try channel.writeInbound(ByteBuffer(bytes: frame))
            node.settle()
        }

        /// The text frames that arrived since the last call (pings answered).
        @discardableResult
        func receive() throws -> [String] {
            node.settle()
            unread += try read()
            var fresh: [String] = []
            var index = 0
            while index + 2 <= unread.count {
                let opcode = unread[index] & 0x0F
                var length = Int(unread[index + 1] & 0x7F)
                var start = index + 2
                if length == 126 {
                    guard start + 2 <= unread.count else { break }
                    length = Int(unread[start]) << 8 | Int(unread[start + 1])
                    start += 2
                }
                guard start + length <= unread.count else { break }
                let payload = String(decoding: unread[start..<start + length], as: UTF8.self)
                if opcode == 0x1 { fresh.append(payload) }
                if opcode == 0x8 { closeFrames += 1 }
                index = start + length
            }
            unread.removeFirst(index)
            texts += fresh
            return fresh
        }

        /// `40…` with optional auth JSON; returns the CONNECT reply's object.
        func connect(auth: String = "") throws -> (sid: String, pid: String?) {
            try send("40" + auth)
            let reply = try #require(try receive().last { $0.hasPrefix("40") })
            let object = try JSONParser.parse(reply.dropFirst(2))
            return (try #require(object["sid"]?.stringValue), object["pid"]?.stringValue)
        }

        /// The `message` broadcasts received: (event JSON value, offset if any).
        var broadcasts: [(event: JSONValue, offset: String?)] {
            texts.compactMap { text in
                guard text.hasPrefix("42"), case .array(let items)? = try? JSONParser.parse(text.dropFirst(2)),
                      items.first == .string("message"), items.count >= 2 else { return nil }
                return (items[1], items.count == 3 ? items[2].stringValue : nil)
            }
        }

        var lastOffset: String? { broadcasts.last?.offset }

        func events(_ kind: String) -> [String] {
            broadcasts.filter { $0.event["event"] == .string(kind) }.map {
                $0.event["data"]?["text"]?.stringValue ?? $0.event["data"]?["username"]?.stringValue ?? ""
            }
        }

        /// The TCP connection goes, without `41` or a close frame.
        func drop() {
            channel.pipeline.fireChannelInactive()
            node.settle()
        }
    }

    private static func say(_ text: String) -> String { #"42["say",{"text":"\#(text)"}]"# }
    private static func join(_ name: String) -> String { #"42["join",{"username":"\#(name)"}]"# }

    @Test func aNewSessionGetsSidAndPidAndEveryBroadcastCarriesItsOffset() throws {
        let node = Node()
        let x = try Client(node)
        let reply = try x.connect()
        #expect(reply.pid?.count == 20 && reply.sid.count == 20 && reply.pid != reply.sid)
        try x.send(Self.join("x"))
        try x.send(Self.say("hi"))
        try x.receive()
        #expect(x.events("join") == ["x"] && x.events("broadcast_say") == ["hi"])
        #expect(x.broadcasts.allSatisfy { $0.offset.map { RecoveryOffset(parsing: $0) != nil } ?? false })
        #expect(Set(x.broadcasts.compactMap(\.offset)).count == 2, "each broadcast names a new point")
    }

    @Test func aTransportCloseHoldsTheSessionAndItComesBackWithWhatItMissedAndItsOldSid() throws {
        let node = Node()
        let x = try Client(node)
        let old = try x.connect()
        try x.send(Self.join("x"))
        let o = try Client(node)
        _ = try o.connect()
        try o.send(Self.join("o"))
        try o.send(Self.say("before"))
        try x.receive()
        let offset = try #require(x.lastOffset)

        x.drop()
        #expect(node.metrics.sessionsHeld == 1)
        try o.send(Self.say("missed-1"))
        try o.send(Self.say("missed-2"))

        let y = try Client(node)
        let back = try y.connect(auth: #"{"pid":"\#(old.pid!)","offset":"\#(offset)"}"#)
        #expect(back.sid == old.sid && back.pid == old.pid)
        #expect(y.events("broadcast_say") == ["missed-1", "missed-2"])
        let connectAt = try #require(y.texts.firstIndex { $0.hasPrefix("40") })
        #expect(connectAt == y.texts.count - 1, "the replay comes before the CONNECT reply")
        #expect(y.broadcasts.allSatisfy { $0.offset != nil })

        // In the room as x, without a join; the room saw neither a quit nor a second join.
        try y.send(Self.say("back"))
        try o.receive()
        #expect(o.events("broadcast_say").last == "back")
        #expect(o.broadcasts.last?.event["data"]?["username"] == .string("x"))
        #expect(o.events("broadcast_quit").isEmpty && o.events("join") == ["o"])
        #expect(node.metrics.attempted == 1 && node.metrics.succeeded == 1 && node.metrics.sessionsHeld == 0)
    }

    @Test func anExplicitDisconnectQuitsAtOnceAndCannotBeRecovered() throws {
        let node = Node()
        let o = try Client(node)
        _ = try o.connect()
        try o.send(Self.join("o"))
        let x = try Client(node)
        let old = try x.connect()
        try x.send(Self.join("x"))
        try x.send("41")
        try o.receive()
        #expect(o.events("broadcast_quit") == ["x"])

        let y = try Client(node)
        let reply = try y.connect(auth: #"{"pid":"\#(old.pid!)"}"#)
        #expect(reply.sid != old.sid && reply.pid != nil && reply.pid != old.pid)
        #expect(node.metrics.failed[.ended] == 1)
    }

    @Test func aPidLiveOnAnotherConnectionIsTakenOverWithoutAQuit() throws {
        let node = Node()
        let o = try Client(node)
        _ = try o.connect()
        try o.send(Self.join("o"))
        let x = try Client(node)
        let old = try x.connect()
        try x.send(Self.join("x"))

        let y = try Client(node)
        let back = try y.connect(auth: #"{"pid":"\#(old.pid!)"}"#)
        #expect(back.sid == old.sid)
        try x.receive()
        #expect(x.closeFrames == 1, "the old connection is closed")
        #expect(node.metrics.takenOver == 1)
        try y.send(Self.say("moved"))
        try o.receive()
        try x.receive()
        #expect(o.events("broadcast_say") == ["moved"] && o.events("broadcast_quit").isEmpty)
        #expect(x.events("broadcast_say").isEmpty, "the old connection gets nothing more")
    }

    @Test func badAuthAndBadOffsetsGetANewSessionAndAreCounted() throws {
        let node = Node()
        let x = try Client(node)
        let old = try x.connect()
        for (auth, reason) in [
            (#"{"pid":12}"#, RecoveryFailure.badAuth),
            (#"{"pid":"\#(old.pid!)","offset":17}"#, .badOffset),
            (#"{"pid":"\#(old.pid!)","offset":"not an offset!"}"#, .badOffset),
            (#"{"pid":"AAAAAAAAAAAAAAAAAAAA","offset":"1.1"}"#, .unknownPid),
        ] {
            let before = node.metrics.failed[reason] ?? 0
            let y = try Client(node)
            let reply = try y.connect(auth: auth)
            #expect(reply.sid != old.sid && reply.pid != nil && reply.pid != old.pid, "\(auth)")
            #expect(node.metrics.failed[reason] == before + 1, "\(auth)")
        }
        #expect(node.metrics.attempted == 4 && node.metrics.succeeded == 0)
    }

    @Test func recoveryOffAnswersTheSidAloneAndBroadcastsCarryNoOffset() throws {
        let node = Node(recovery: false)
        let x = try Client(node)
        try x.send(#"40{"pid":"AAAAAAAAAAAAAAAAAAAA","offset":"1.1"}"#)
        let reply = try #require(try x.receive().first)
        #expect(reply.hasPrefix(#"40{"sid":""#) && !reply.contains("pid"))
        try x.send(Self.join("x"))
        try x.receive()
        #expect(x.texts.last == #"42["message",{"event":"join","data":{"username":"x"}}]"#)
    }

    /// Redis subscribes a room while the node has members in it: a held session keeps its room
    /// (so what is said meanwhile reaches the node, to be replayed) until it is back or its
    /// time is up.
    @Test func aHeldSessionKeepsItsRoomSubscribedUntilItIsBackOrItsTimeIsUp() throws {
        let node = Node(holdRooms: .seconds(5))
        let x = try Client(node)
        let old = try x.connect()
        try x.send(Self.join("x"))
        #expect(node.server.hub.roomCount == 1)

        x.drop()
        #expect(node.server.hub.roomCount == 1, "the held session's room stays")
        #expect(node.server.heldRooms?.count == 1)

        let y = try Client(node)
        #expect(try y.connect(auth: #"{"pid":"\#(old.pid!)"}"#).sid == old.sid)
        #expect(node.server.heldRooms?.count == 0 && node.server.hub.roomCount == 1)

        y.drop()
        #expect(node.server.hub.roomCount == 1)
        node.loop.advanceTime(by: .seconds(5))
        node.settle()
        #expect(node.server.heldRooms?.count == 0 && node.server.hub.roomCount == 0, "gone when its time is up")
    }

    /// A draining node's sessions: held when the mesh keeps them for the other nodes, ended
    /// with their quits when they would die with this process (Redis, one node).
    @Test(arguments: [false, true])
    func aDrainHoldsSessionsOnlyWhereOtherNodesCanRecoverThem(sessionsOutliveNode: Bool) throws {
        let node = Node(sessionsOutliveNode: sessionsOutliveNode)
        let o = try Client(node)
        _ = try o.connect()
        try o.send(Self.join("o"))
        let x = try Client(node)
        _ = try x.connect()
        try x.send(Self.join("x"))
        try #require(node.server.sessions.session(x.engineSID)).drain()
        node.settle()
        try o.receive()
        #expect(o.events("broadcast_quit") == (sessionsOutliveNode ? [] : ["x"]))
        #expect(node.metrics.sessionsHeld == (sessionsOutliveNode ? 1 : 0))
    }
}
