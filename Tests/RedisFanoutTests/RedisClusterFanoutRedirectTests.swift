import ChatCore
import ClusterConfig
import Logging
import NIOCore
import NIOPosix
import Foundation
import NIOConcurrencyHelpers
import Testing
@testable import RedisFanout

/// The cluster fanout against small fake cluster nodes on loopback that speak RESP: what a real
/// cluster cannot be made to do on demand (a seed not in cluster mode is easy; a MOVED loop
/// is not), and the redirect paths with their exact replies. (A real 6-process cluster is
/// exercised by IntegrationTests/integration/test_redis_cluster*.py.)
@Suite(.serialized) struct RedisClusterFanoutRedirectTests {
    /// One fake cluster node: records every command; `answer` gives the replies to one.
    final class FakeNode: Sendable {
        let commands = NIOLockedValueBox<[[String]]>([])
        let answer: @Sendable ([String]) -> [RESPValue]
        let channel: any Channel
        var port: Int { channel.localAddress!.port! }
        var address: HostPort { HostPort(host: "127.0.0.1", port: port) }

        /// `refuseSubscribe` gives the reply to an SSUBSCRIBE of a channel instead of its
        /// confirmation (a MOVED), or nil to confirm it.
        init(group: any EventLoopGroup, refuseSubscribe: (@Sendable (String) -> RESPValue?)? = nil,
             answer: @escaping @Sendable ([String]) -> [RESPValue]) throws {
            self.answer = answer
            let commands = self.commands
            channel = try ServerBootstrap(group: group)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .childChannelInitializer { child in
                    child.eventLoop.makeCompletedFuture {
                        try child.pipeline.syncOperations.addHandler(FakeNodeHandler(commands: commands, answer: answer,
                                                                                     refuseSubscribe: refuseSubscribe))
                    }
                }
                .bind(host: "127.0.0.1", port: 0).wait()
        }

        func sent(_ name: String) -> [[String]] {
            commands.withLockedValue { $0.filter { $0.first?.uppercased() == name } }
        }

        /// Pushes `value` to every connection that SSUBSCRIBEd `channel`.
        func push(_ value: RESPValue, toSubscribersOf channel: String) {
            FakeNodeHandler.push(value, channel: channel, on: self.channel.eventLoop)
        }

        /// Closes every connection a client has open to this node (the node keeps listening).
        func dropConnections() {
            FakeNodeHandler.closeConnections(toPort: port)
        }

        func close() { try? channel.close().wait() }
    }

    final class FakeNodeHandler: ChannelInboundHandler, @unchecked Sendable { // on its channel's loop only
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer
        let commands: NIOLockedValueBox<[[String]]>
        let answer: @Sendable ([String]) -> [RESPValue]
        let refuseSubscribe: (@Sendable (String) -> RESPValue?)?
        var inbound = ByteBuffer()
        var subscribed = false
        var context: ChannelHandlerContext?
        var channels: Set<String> = []
        static let subscribers = NIOLockedValueBox<[ObjectIdentifier: FakeNodeHandler]>([:])

        init(commands: NIOLockedValueBox<[[String]]>, answer: @escaping @Sendable ([String]) -> [RESPValue],
             refuseSubscribe: (@Sendable (String) -> RESPValue?)?) {
            self.commands = commands
            self.answer = answer
            self.refuseSubscribe = refuseSubscribe
        }

        static func push(_ value: RESPValue, channel: String, on loop: any EventLoop) {
            let handlers = subscribers.withLockedValue { Array($0.values) }
            for handler in handlers where handler.channels.contains(channel) {
                handler.context?.eventLoop.execute {
                    guard let context = handler.context else { return }
                    var out = context.channel.allocator.buffer(capacity: 64)
                    RESPEncoder.writeValue(value, into: &out)
                    context.writeAndFlush(NIOAny(out), promise: nil)
                }
            }
        }

        static func closeConnections(toPort port: Int) {
            let handlers = subscribers.withLockedValue { Array($0.values) }
            for handler in handlers {
                guard let loop = handler.context?.eventLoop else { continue }
                loop.execute {
                    guard let context = handler.context, context.channel.localAddress?.port == port else { return }
                    context.close(promise: nil)
                }
            }
        }

        func handlerAdded(context: ChannelHandlerContext) {
            self.context = context
            Self.subscribers.withLockedValue { $0[ObjectIdentifier(self)] = self }
        }

        func handlerRemoved(context: ChannelHandlerContext) {
            self.context = nil
            Self.subscribers.withLockedValue { $0[ObjectIdentifier(self)] = nil }
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            var chunk = unwrapInboundIn(data)
            inbound.writeBuffer(&chunk)
            var out = context.channel.allocator.buffer(capacity: 64)
            while let value = try? RESPDecoder().next(from: &inbound) {
                guard case .array(let parts?) = value else { continue }
                let command = parts.compactMap(\.string)
                commands.withLockedValue { $0.append(command) }
                switch command.first?.uppercased() {
                case "SSUBSCRIBE":
                    subscribed = true
                    if let refusal = refuseSubscribe?(command[1]) {
                        RESPEncoder.writeValue(refusal, into: &out)
                        continue
                    }
                    channels.insert(command[1])
                    RESPEncoder.writeValue(.array([bulk("ssubscribe"), bulk(command[1]), .integer(1)]), into: &out)
                case "SUNSUBSCRIBE":
                    channels.remove(command[1])
                    RESPEncoder.writeValue(.array([bulk("sunsubscribe"), bulk(command[1]), .integer(0)]), into: &out)
                case "PING":
                    RESPEncoder.writeValue(subscribed ? .array([bulk("pong"), bulk("")]) : .simpleString("PONG"), into: &out)
                case "ASKING":
                    RESPEncoder.writeValue(.simpleString("OK"), into: &out)
                default:
                    for reply in answer(command) { RESPEncoder.writeValue(reply, into: &out) }
                }
            }
            inbound.discardReadBytes()
            if out.readableBytes > 0 { context.writeAndFlush(wrapOutboundOut(out), promise: nil) }
        }
    }

    /// Every line logged, as "level message".
    final class LogLines: Sendable {
        let lines = NIOLockedValueBox<[String]>([])
        var all: [String] { lines.withLockedValue { $0 } }
        func contains(_ text: String) -> Bool { all.contains { $0.contains(text) } }
    }

    struct RecordingLogHandler: LogHandler {
        let sink: LogLines
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .debug
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            sink.lines.withLockedValue { $0.append("\(event.level) \(event.message)") }
        }
    }

    final class NoDelivery: FanoutDelivery {
        func deliverLocally(_ broadcast: ChatBroadcast) {}
    }

    /// `CLUSTER SLOTS` naming one shard with every slot, at `address`.
    static func allSlots(at address: HostPort) -> RESPValue {
        .array([.array([.integer(0), .integer(16383), .array([bulk(address.host), .integer(Int64(address.port)), bulk("id")])])])
    }

    /// A fake node's answers: every slot at `owner` (read at each `CLUSTER`, so a test moves the
    /// slots by setting it) and `:1` to everything else.
    static func ownerAnswers(_ owner: NIOLockedValueBox<HostPort?>) -> @Sendable ([String]) -> [RESPValue] {
        { command in
            command.first?.uppercased() == "CLUSTER" ? [allSlots(at: owner.withLockedValue { $0! })] : [.integer(1)]
        }
    }

    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    let log = LogLines()

    func makeFanout(seeds: [HostPort]) -> RedisClusterFanout {
        var url = RedisURL(host: seeds[0].host, port: seeds[0].port)
        url.cluster = true
        url.seeds = seeds
        let sink = log
        let fanout = RedisClusterFanout(url: url, channelPrefix: "", bufferMessages: 100, bufferTime: .seconds(30),
                                        eventLoop: group.next(),
                                        logger: Logger(label: "cluster-test", factory: { _ in RecordingLogHandler(sink: sink) }),
                                        publishGrace: .milliseconds(30))
        fanout.start(delivery: NoDelivery())
        return fanout
    }

    /// Polls `condition` every 20 ms for up to `seconds`.
    func eventually(_ seconds: Double = 5, _ condition: () -> Bool) -> Bool {
        let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
        while ContinuousClock.now < deadline {
            if condition() { return true }
            Thread.sleep(forTimeInterval: 0.02)
        }
        return condition()
    }

    func say(_ room: String, _ text: String) -> ChatMessage {
        ChatMessage(room: room, eventJSON: #"{"event":"message","data":{"text":"\#(text)"}}"#)
    }

    @Test func aSeedNotInClusterModeIsNamedInHealthLoggedOnceAndAskedAgain() throws {
        let node = try FakeNode(group: group) { _ in [.error("ERR This instance has cluster support disabled")] }
        defer { node.close() }
        let fanout = makeFanout(seeds: [node.address])
        try fanout.start(FanoutStartContext())
        defer { _ = try? fanout.stop().wait() }
        #expect(eventually { node.sent("CLUSTER").count >= 3 })
        let health = fanout.health
        #expect(!health.isReady)
        #expect(health.statusLine == "redis cluster: no topology yet")
        let error = health.details.first { $0.0 == "redis_error" }?.1.stringValue ?? ""
        #expect(error.contains("not in cluster mode"))
        #expect(log.all.filter { $0.hasPrefix("error") && $0.contains("is not in cluster mode") }.count == 1)
    }

    @Test func aMovedSayGoesToTheNamedNodeAndItsRoomSubscribesThere() throws {
        let owner = NIOLockedValueBox<HostPort?>(nil)
        let nodeB = try FakeNode(group: group, answer: Self.ownerAnswers(owner))
        defer { nodeB.close() }
        let nodeA = try FakeNode(group: group) { command in
            switch command.first?.uppercased() {
            case "CLUSTER": return [RedisClusterFanoutRedirectTests.allSlots(at: owner.withLockedValue { $0! })]
            case "SPUBLISH":
                // The slot left for B: from now on the cluster says so too.
                owner.withLockedValue { $0 = nodeB.address }
                return [.error("MOVED \(RedisHashSlot.of(command[1])) 127.0.0.1:\(nodeB.port)")]
            default: return [.integer(1)]
            }
        }
        defer { nodeA.close() }
        owner.withLockedValue { $0 = nodeA.address }
        let fanout = makeFanout(seeds: [nodeA.address])
        try fanout.start(FanoutStartContext())
        defer { _ = try? fanout.stop().wait() }
        #expect(eventually { fanout.health.isReady })
        fanout.subscribe(room: "lobby")
        #expect(eventually { nodeA.sent("SSUBSCRIBE").count == 1 })
        fanout.publish(say("lobby", "one"))
        fanout.publish(say("lobby", "two"))
        #expect(eventually { nodeB.sent("SPUBLISH").count == 2 })
        #expect(nodeB.sent("SPUBLISH").map { $0[2] } == [#"{"event":"message","data":{"text":"one"}}"#,
                                                        #"{"event":"message","data":{"text":"two"}}"#])
        #expect(nodeB.sent("SSUBSCRIBE").map { $0[1] } == ["lobby"])
        #expect(eventually { fanout.health.details.contains { $0.0 == "redis_shards" && "\($0.1)".contains("\(nodeB.port)") } })
        let start = ContinuousClock.now
        try fanout.drain(deadline: .now() + .seconds(3)).wait()
        #expect(ContinuousClock.now - start < .seconds(2))
        #expect(log.contains("redis slot moved"))
    }

    @Test func aMovedLoopIsBoundedLoggedAndTheSayKeepsWaiting() throws {
        // A owns every slot by its map, yet answers MOVED to B; B answers MOVED back to A.
        let ports = NIOLockedValueBox<(a: Int, b: Int)>((0, 0))
        let nodeA = try FakeNode(group: group) { command in
            let (a, b) = ports.withLockedValue { $0 }
            switch command.first?.uppercased() {
            case "CLUSTER": return [RedisClusterFanoutRedirectTests.allSlots(at: HostPort(host: "127.0.0.1", port: a))]
            case "SPUBLISH": return [.error("MOVED \(RedisHashSlot.of(command[1])) 127.0.0.1:\(b)")]
            default: return [.integer(1)]
            }
        }
        defer { nodeA.close() }
        let nodeB = try FakeNode(group: group) { command in
            let (a, _) = ports.withLockedValue { $0 }
            switch command.first?.uppercased() {
            case "CLUSTER": return [RedisClusterFanoutRedirectTests.allSlots(at: HostPort(host: "127.0.0.1", port: a))]
            case "SPUBLISH": return [.error("MOVED \(RedisHashSlot.of(command[1])) 127.0.0.1:\(a)")]
            default: return [.integer(1)]
            }
        }
        defer { nodeB.close() }
        ports.withLockedValue { $0 = (nodeA.port, nodeB.port) }
        let fanout = makeFanout(seeds: [nodeA.address])
        try fanout.start(FanoutStartContext())
        defer { _ = try? fanout.stop().wait() }
        #expect(eventually { fanout.health.isReady })
        fanout.publish(say("loop", "x"))
        #expect(eventually { log.contains("redis MOVED loop") })
        // Bounded: each round is at most maxRedirects + 1 sends before the pause.
        let sends = nodeA.sent("SPUBLISH").count + nodeB.sent("SPUBLISH").count
        #expect(sends >= RedisClusterFanout.maxRedirects + 1)
        // The say still waits (the drain runs to its deadline), and the node stays up.
        let start = ContinuousClock.now
        try fanout.drain(deadline: .now() + .milliseconds(300)).wait()
        #expect(ContinuousClock.now - start >= .milliseconds(250))
        #expect(fanout.health.statusLine?.hasPrefix("redis cluster:") == true)
    }

    @Test func aMovedLoopOnSsubscribeIsBoundedLoggedOnceAndTheSaysWaitForTheSlotToComeBack() throws {
        // Both nodes' maps say A owns every slot, yet A answers SSUBSCRIBE with MOVED to B and
        // B with MOVED to A, until `looping` is cleared.
        let ports = NIOLockedValueBox<(a: Int, b: Int)>((0, 0))
        let looping = NIOLockedValueBox(true)
        let map: @Sendable ([String]) -> [RESPValue] = { command in
            switch command.first?.uppercased() {
            case "CLUSTER":
                return [RedisClusterFanoutRedirectTests.allSlots(at: HostPort(host: "127.0.0.1", port: ports.withLockedValue { $0.a }))]
            default: return [.integer(1)]
            }
        }
        let nodeA = try FakeNode(group: group, refuseSubscribe: { channel in
            looping.withLockedValue { $0 }
                ? .error("MOVED \(RedisHashSlot.of(channel)) 127.0.0.1:\(ports.withLockedValue { $0.b })") : nil
        }, answer: map)
        defer { nodeA.close() }
        let nodeB = try FakeNode(group: group, refuseSubscribe: { channel in
            looping.withLockedValue { $0 }
                ? .error("MOVED \(RedisHashSlot.of(channel)) 127.0.0.1:\(ports.withLockedValue { $0.a })") : nil
        }, answer: map)
        defer { nodeB.close() }
        ports.withLockedValue { $0 = (nodeA.port, nodeB.port) }
        let fanout = makeFanout(seeds: [nodeA.address])
        try fanout.start(FanoutStartContext())
        defer { _ = try? fanout.stop().wait() }
        #expect(eventually { fanout.health.isReady })
        fanout.subscribe(room: "loop")
        fanout.publish(say("loop", "x"))
        #expect(eventually { log.contains("redis MOVED loop on SSUBSCRIBE") })
        // Several paused rounds (the test's pause is ~30 ms): each is at most maxRedirects + 1
        // SSUBSCRIBEs, one warning in all, "redis slot moved" once at info, the rest at debug.
        let start = ContinuousClock.now
        #expect(eventually { log.all.filter { $0.contains("redis MOVED loop on SSUBSCRIBE again") }.count >= 3 })
        let elapsed = Double((ContinuousClock.now - start).components.attoseconds) / 1e18
            + Double((ContinuousClock.now - start).components.seconds)
        let subscribes = nodeA.sent("SSUBSCRIBE").count + nodeB.sent("SSUBSCRIBE").count
        let rounds = elapsed / 0.030 + 5 // at most one round per pause, plus the first ones
        #expect(Double(subscribes) <= rounds * Double(RedisClusterFanout.maxRedirects + 1), "\(subscribes) in \(elapsed) s")
        #expect(log.all.filter { $0.hasPrefix("warning") && $0.contains("MOVED loop") }.count == 1)
        #expect(log.all.filter { $0.hasPrefix("info") && $0.contains("redis slot moved") }.count == 1)
        // The say waited: no SPUBLISH while the room was not subscribed anywhere.
        #expect(nodeA.sent("SPUBLISH").isEmpty && nodeB.sent("SPUBLISH").isEmpty)
        // The slot given back: the room subscribes and the say goes out, once.
        looping.withLockedValue { $0 = false }
        #expect(eventually { nodeA.sent("SPUBLISH").count + nodeB.sent("SPUBLISH").count == 1 })
        try fanout.drain(deadline: .now() + .seconds(2)).wait()
        #expect(nodeA.sent("SPUBLISH").count + nodeB.sent("SPUBLISH").count == 1)
    }

    @Test func anAcknowledgedSayWhoseEchoNeverCameIsSentAgainAfterTheShardConnectionsAreLost() throws {
        // The node acknowledges every SPUBLISH but echoes only what the test pushes: as a
        // primary killed after its reply and before writing the message to its subscribers.
        let address = NIOLockedValueBox<HostPort?>(nil)
        let node = try FakeNode(group: group, answer: Self.ownerAnswers(address))
        defer { node.close() }
        address.withLockedValue { $0 = node.address }
        let fanout = makeFanout(seeds: [node.address])
        try fanout.start(FanoutStartContext())
        defer { _ = try? fanout.stop().wait() }
        #expect(eventually { fanout.health.isReady })
        fanout.subscribe(room: "lobby")
        #expect(eventually { node.sent("SSUBSCRIBE").count == 1 })
        let one = say("lobby", "one"), two = say("lobby", "two"), gone = say("empty", "nobody here")
        fanout.publish(one)
        #expect(eventually { node.sent("SPUBLISH").count == 1 })
        node.push(.array([bulk("smessage"), bulk("lobby"), bulk(one.eventJSON)]), toSubscribersOf: "lobby")
        fanout.publish(two)
        fanout.publish(gone) // a room without local members: no echo to wait for
        #expect(eventually { node.sent("SPUBLISH").count == 3 })
        try fanout.drain(deadline: .now() + .seconds(2)).wait() // all three acknowledged
        Thread.sleep(forTimeInterval: 0.1) // the echo of "one" is in
        node.dropConnections()
        // Back on the node: "two" (acknowledged, never echoed) goes again; "one" and the say
        // to the room without members do not.
        #expect(eventually { node.sent("SPUBLISH").count == 4 })
        Thread.sleep(forTimeInterval: 0.3)
        #expect(node.sent("SPUBLISH").map { $0[2] } == [one.eventJSON, two.eventJSON, gone.eventJSON, two.eventJSON])
        #expect(log.contains("before the echo of acknowledged says"))
        // Echoed this time: a second loss sends nothing again.
        node.push(.array([bulk("smessage"), bulk("lobby"), bulk(two.eventJSON)]), toSubscribersOf: "lobby")
        Thread.sleep(forTimeInterval: 0.1)
        node.dropConnections()
        #expect(eventually { fanout.health.isReady && node.sent("SSUBSCRIBE").count == 3 })
        Thread.sleep(forTimeInterval: 0.3)
        #expect(node.sent("SPUBLISH").count == 4)
    }

    @Test func anUnsolicitedSunsubscribeMovesTheRoomToItsNewOwner() throws {
        let owner = NIOLockedValueBox<HostPort?>(nil)
        let nodeA = try FakeNode(group: group, answer: Self.ownerAnswers(owner))
        defer { nodeA.close() }
        let nodeB = try FakeNode(group: group, answer: Self.ownerAnswers(owner))
        defer { nodeB.close() }
        owner.withLockedValue { $0 = nodeA.address }
        let fanout = makeFanout(seeds: [nodeA.address, nodeB.address])
        try fanout.start(FanoutStartContext())
        defer { _ = try? fanout.stop().wait() }
        #expect(eventually { fanout.health.isReady })
        fanout.subscribe(room: "moving")
        #expect(eventually { nodeA.sent("SSUBSCRIBE").count == 1 })
        // The slot is resharded to B; A drops the channel by itself, as Redis does.
        owner.withLockedValue { $0 = nodeB.address }
        nodeA.push(.array([bulk("sunsubscribe"), bulk("moving"), .integer(0)]), toSubscribersOf: "moving")
        #expect(eventually { nodeB.sent("SSUBSCRIBE").map { $0[1] } == ["moving"] })
        #expect(log.contains("redis shard unsubscribed a room"))
        #expect(nodeA.sent("SUNSUBSCRIBE").isEmpty)
    }
}
