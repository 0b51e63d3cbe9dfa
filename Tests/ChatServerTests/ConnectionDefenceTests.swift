import NIOConcurrencyHelpers
import NIOCore
import NIOEmbedded
import NIOHTTP1
import Testing

@testable import ChatServer

/// The client port's connection-level defences on embedded channels: the header timer runs
/// from the accept until a request head is complete and is not reset by trickled bytes; a
/// completed head, or a WebSocket upgrade, stops it; a keep-alive connection is timed again from
/// the end of each response; at the socket cap the oldest unfinished connection makes room,
/// and when every socket is a client the new one is refused.
struct ConnectionDefenceTests {
    static let timeout = TimeAmount.seconds(10)

    /// A gate on one embedded loop that records what it cut.
    final class Harness {
        let loop = EmbeddedEventLoop()
        let cuts = NIOLockedValueBox<[ClientSocketRegistry.CutReason]>([])
        let gate: ConnectionGate

        init(cap: Int = 1000) {
            let cuts = self.cuts
            gate = ConnectionGate(eventLoops: [loop], headerTimeout: ConnectionDefenceTests.timeout, socketCap: cap,
                                  logger: .init(label: "test")) { reason in cuts.withLockedValue { $0.append(reason) } }
        }

        var registry: ClientSocketRegistry { gate.registry(for: loop) }
        var cutReasons: [ClientSocketRegistry.CutReason] { cuts.withLockedValue { $0 } }

        /// A client connection as the node builds it: tracker, HTTP codec (with an upgrader
        /// that answers `Upgrade: test`), observer; nil when the gate refused it.
        func accept() throws -> EmbeddedChannel? {
            let channel = EmbeddedChannel(loop: loop)
            guard try gate.admit(channel) else {
                _ = try? channel.close().wait()
                return nil
            }
            try channel.pipeline.syncOperations.configureHTTPServerPipeline(
                withServerUpgrade: (upgraders: [ByteWritingUpgrader()], completionHandler: { RequestHeadObserver.connectionUpgraded($0) })
            )
            try RequestHeadObserver.addIfTracked(to: channel.pipeline.syncOperations)
            try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
            return channel
        }
    }

    /// Upgrades to a protocol that, like the node's WebSocket, writes plain bytes at once.
    struct ByteWritingUpgrader: HTTPServerProtocolUpgrader, Sendable {
        let supportedProtocol = "test"
        let requiredUpgradeHeaders: [String] = []

        func buildUpgradeResponse(channel: any Channel, upgradeRequest: HTTPRequestHead, initialResponseHeaders: HTTPHeaders) -> EventLoopFuture<HTTPHeaders> {
            channel.eventLoop.makeSucceededFuture(initialResponseHeaders)
        }

        func upgrade(context: ChannelHandlerContext, upgradeRequest: HTTPRequestHead) -> EventLoopFuture<Void> {
            context.channel.writeAndFlush(ByteBuffer(string: "upgraded bytes"))
        }
    }

    /// Bytes from the client; then the loop runs what they set off (the upgrade's steps).
    private func send(_ channel: EmbeddedChannel, _ text: String) throws {
        try channel.writeInbound(ByteBuffer(string: text))
        (channel.eventLoop as! EmbeddedEventLoop).run()
    }

    /// Reads what the server wrote as text (HTTP responses come out encoded).
    private func written(_ channel: EmbeddedChannel) throws -> String {
        var text = ""
        while let buffer = try channel.readOutbound(as: ByteBuffer.self) { text += String(buffer: buffer) }
        return text
    }

    private func respond(_ channel: EmbeddedChannel) throws {
        let head = HTTPResponseHead(version: .http1_1, status: .ok, headers: ["content-length": "0"])
        try channel.writeOutbound(HTTPServerResponsePart.head(head))
        try channel.writeOutbound(HTTPServerResponsePart.end(nil))
    }

    @Test func aSilentConnectionIsCutAtHeaderTimeoutNotBefore() throws {
        let h = Harness()
        let channel = try #require(try h.accept())
        #expect(h.registry.openCount == 1 && h.registry.unfinishedCount == 1)
        h.loop.advanceTime(by: Self.timeout - .milliseconds(1))
        #expect(channel.isActive)
        #expect(h.cutReasons.isEmpty)
        h.loop.advanceTime(by: .milliseconds(1))
        #expect(!channel.isActive)
        #expect(h.cutReasons == [.headerTimeout])
        #expect(try written(channel).isEmpty, "a connection that said nothing (it may speak TLS) is told nothing")
        #expect(h.registry.openCount == 0 && h.registry.unfinishedCount == 0 && h.registry.awaitingHeadCount == 0)
    }

    /// A reload shortens header_timeout: a connection already waiting is timed by the new
    /// value (cut at once if it waited longer), and a later one too.
    @Test func aReloadedHeaderTimeoutAppliesToConnectionsAlreadyWaiting() throws {
        let h = Harness()
        let old = try #require(try h.accept())
        h.loop.advanceTime(by: .seconds(3))
        let young = try #require(try h.accept())
        h.gate.apply(headerTimeout: .seconds(2), socketCap: 1000)
        h.loop.run()
        #expect(!old.isActive, "waited 3 s, past the new 2 s")
        #expect(young.isActive)
        h.loop.advanceTime(by: .milliseconds(1999))
        #expect(young.isActive)
        h.loop.advanceTime(by: .milliseconds(1))
        #expect(!young.isActive)
        #expect(h.cutReasons == [.headerTimeout, .headerTimeout])
        #expect(h.registry.headerTimeout == .seconds(2))
    }

    /// A reload lowers the socket cap: the next accept is judged by it.
    @Test func aReloadedSocketCapRefusesTheNextConnection() throws {
        let h = Harness(cap: 10)
        let first = try #require(try h.accept())
        try send(first, "GET /socket.io/?EIO=4&transport=polling&sid=x HTTP/1.1\r\nHost: a\r\n\r\n")
        h.gate.apply(headerTimeout: Self.timeout, socketCap: 1)
        #expect(h.gate.socketCap == 1)
        #expect(try h.accept() == nil, "every socket is a client at the new cap of 1")
        h.gate.apply(headerTimeout: Self.timeout, socketCap: 2)
        #expect(try h.accept() != nil)
    }

    @Test func trickledHeaderLinesDoNotResetTheTimer() throws {
        let h = Harness()
        let channel = try #require(try h.accept())
        try send(channel, "GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\n")
        for i in 0..<9 {
            h.loop.advanceTime(by: .seconds(1))
            try send(channel, "X-Slow-\(i): \(i)\r\n")
        }
        #expect(channel.isActive)
        h.loop.advanceTime(by: .seconds(1))
        #expect(!channel.isActive, "a slowloris kept its connection past header_timeout")
        #expect(h.cutReasons == [.headerTimeout])
        #expect(try written(channel).hasPrefix("HTTP/1.1 408 Request Timeout\r\n"))
    }

    @Test func aCompletedRequestHeadStopsTheTimerWhileTheRequestIsHeld() throws {
        let h = Harness()
        let channel = try #require(try h.accept())
        h.loop.advanceTime(by: .seconds(9))
        try send(channel, "GET /socket.io/?EIO=4&transport=polling&sid=x HTTP/1.1\r\nHost: a\r\n\r\n")
        #expect(try channel.readInbound(as: HTTPServerRequestPart.self).map { if case .head = $0 { true } else { false } } == true)
        #expect(h.registry.unfinishedCount == 0 && h.registry.awaitingHeadCount == 0)
        // A long-poll held far longer than header_timeout is not cut by it.
        h.loop.advanceTime(by: .seconds(60))
        #expect(channel.isActive)
        #expect(h.cutReasons.isEmpty)
        #expect(h.registry.openCount == 1)
    }

    @Test func aKeepAliveConnectionIsTimedAgainFromTheEndOfEachResponse() throws {
        let h = Harness()
        let channel = try #require(try h.accept())
        try send(channel, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        h.loop.advanceTime(by: .seconds(30))  // the response takes a while (a long-poll)
        try respond(channel)
        #expect(try written(channel).hasPrefix("HTTP/1.1 200 OK"))
        #expect(h.registry.awaitingHeadCount == 1)
        #expect(h.registry.unfinishedCount == 0, "a connection that completed a request is not unfinished")
        h.loop.advanceTime(by: Self.timeout - .milliseconds(1))
        #expect(channel.isActive)
        h.loop.advanceTime(by: .milliseconds(1))
        #expect(!channel.isActive)
        #expect(h.cutReasons == [.keepaliveTimeout], "an idle keep-alive connection is counted apart from attacks")
    }

    @Test func aKeepAliveConnectionTricklingItsNextHeadIsAHeaderTimeout() throws {
        let h = Harness()
        let channel = try #require(try h.accept())
        try send(channel, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        try respond(channel)
        try send(channel, "GET / HTTP/1.1\r\n")
        h.loop.advanceTime(by: .seconds(5))
        try send(channel, "X-Slow: 1\r\n")
        h.loop.advanceTime(by: .seconds(5))
        #expect(!channel.isActive)
        #expect(h.cutReasons == [.headerTimeout])
    }

    @Test func anUpgradedConnectionLeavesTheTimerAndTheObserverLeavesThePipeline() throws {
        let h = Harness()
        let channel = try #require(try h.accept())
        try send(channel, "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: test\r\nConnection: upgrade\r\n\r\n")
        // The upgraded protocol's bytes went out past where the observer was (it reads HTTP
        // parts only: had it stayed, this write would have trapped).
        let out = try written(channel)
        #expect(out.hasPrefix("HTTP/1.1 101 Switching Protocols"))
        #expect(out.hasSuffix("upgraded bytes"))
        #expect((try? channel.pipeline.syncOperations.handler(type: RequestHeadObserver.self)) == nil)
        #expect(h.registry.unfinishedCount == 0 && h.registry.awaitingHeadCount == 0)
        h.loop.advanceTime(by: .seconds(120))
        #expect(channel.isActive)
        #expect(h.cutReasons.isEmpty)
    }

    @Test func atTheCapTheOldestUnfinishedConnectionMakesRoom() throws {
        let h = Harness(cap: 3)
        let first = try #require(try h.accept())
        h.loop.advanceTime(by: .seconds(1))
        let second = try #require(try h.accept())
        h.loop.advanceTime(by: .seconds(1))
        let third = try #require(try h.accept())
        // The first completes a request: it is a client now, older or not.
        try send(first, "GET /socket.io/?EIO=4&transport=polling&sid=x HTTP/1.1\r\nHost: a\r\n\r\n")
        let fourth = try #require(try h.accept())
        #expect(first.isActive && third.isActive && fourth.isActive)
        #expect(!second.isActive, "the oldest unfinished connection was not the one cut")
        h.loop.run()
        #expect(h.cutReasons == [.socketCap])
        #expect(h.gate.openSockets == 3 && h.gate.unfinishedSockets == 2)
        // The third and fourth (accepted at 2 s) are still timed from their accept; the
        // first's request is held.
        h.loop.advanceTime(by: .seconds(10) - .milliseconds(1))
        #expect(third.isActive && fourth.isActive)
        h.loop.advanceTime(by: .milliseconds(1))
        #expect(!third.isActive && !fourth.isActive && first.isActive)
        #expect(h.cutReasons == [.socketCap, .headerTimeout, .headerTimeout])
    }

    /// The oldest unfinished connection of the node goes, even when it is on another loop
    /// than the newcomer (which is then admitted while that loop cuts it).
    @Test func atTheCapTheNodesOldestUnfinishedGoesWhateverItsLoop() throws {
        let loopA = EmbeddedEventLoop(), loopB = EmbeddedEventLoop()
        let cuts = NIOLockedValueBox<[ClientSocketRegistry.CutReason]>([])
        let gate = ConnectionGate(eventLoops: [loopA, loopB], headerTimeout: Self.timeout, socketCap: 2,
                                  logger: .init(label: "test")) { reason in cuts.withLockedValue { $0.append(reason) } }
        func accept(on loop: EmbeddedEventLoop) throws -> EmbeddedChannel {
            let channel = EmbeddedChannel(loop: loop)
            #expect(try gate.admit(channel))
            try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
            return channel
        }
        let older = try accept(on: loopB)
        loopA.advanceTime(by: .seconds(1))
        loopB.advanceTime(by: .seconds(1))
        let newer = try accept(on: loopA)
        _ = try accept(on: loopA)
        #expect(older.isActive, "the cut runs on the oldest connection's own loop")
        loopB.run()
        #expect(!older.isActive)
        #expect(newer.isActive)
        #expect(cuts.withLockedValue { $0 } == [.socketCap])
    }

    /// With no unfinished connection left, an idle keep-alive connection (its client simply
    /// reopens one) makes room before anyone is refused; one holding a request never does.
    @Test func atTheCapWithNoUnfinishedTheLongestIdleKeepAliveMakesRoom() throws {
        let h = Harness(cap: 3)
        let held = try #require(try h.accept())
        try send(held, "GET /socket.io/?EIO=4&transport=polling&sid=x HTTP/1.1\r\nHost: a\r\n\r\n")
        var idle: [EmbeddedChannel] = []
        for _ in 0..<2 {
            let channel = try #require(try h.accept())
            try send(channel, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            try respond(channel)
            idle.append(channel)
            h.loop.advanceTime(by: .seconds(1))
        }
        #expect(h.gate.unfinishedSockets == 0)
        let newcomer = try #require(try h.accept())
        h.loop.run()
        #expect(!idle[0].isActive, "the longest idle keep-alive connection was not the one cut")
        #expect(held.isActive && idle[1].isActive && newcomer.isActive)
        #expect(h.cutReasons == [.socketCap])
    }

    @Test func whenEverySocketIsAClientANewConnectionIsRefused() throws {
        let h = Harness(cap: 2)
        let channels = try (0..<2).map { _ in try #require(try h.accept()) }
        for channel in channels {
            try send(channel, "GET / HTTP/1.1\r\nUpgrade: test\r\nConnection: upgrade\r\n\r\n")
        }
        #expect(h.gate.unfinishedSockets == 0)
        #expect(try h.accept() == nil)
        #expect(h.cutReasons == [.socketCap])
        let allOpen = channels.allSatisfy { $0.isActive }
        #expect(allOpen)
        h.loop.run()
        #expect(h.gate.openSockets == 2)
    }

    @Test func theCapKeepsTheReserveBelowTheDescriptorLimit() {
        #expect(ClientSocketCap(maxSockets: 0, fdReserve: 256, descriptorLimit: 20_000).value == 19_744)
        #expect(ClientSocketCap(maxSockets: 5_000, fdReserve: 256, descriptorLimit: 20_000).value == 5_000)
        let lowered = ClientSocketCap(maxSockets: 50_000, fdReserve: 256, descriptorLimit: 20_000)
        #expect(lowered.value == 19_744 && lowered.lowered)
        #expect(ClientSocketCap(maxSockets: 0, fdReserve: 256, descriptorLimit: nil).value == Int.max)
        #expect(ClientSocketCap(maxSockets: 0, fdReserve: 256, descriptorLimit: 100).value == 16)
    }
}
