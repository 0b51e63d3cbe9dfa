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

    /// Two loops' gate, on embedded loops, and plain tracked channels (no HTTP codec).
    final class TwoLoops {
        let loopA = EmbeddedEventLoop(), loopB = EmbeddedEventLoop()
        let cuts = NIOLockedValueBox<[ClientSocketRegistry.CutReason]>([])
        let gate: ConnectionGate

        init(cap: Int) {
            let cuts = self.cuts
            gate = ConnectionGate(eventLoops: [loopA, loopB], headerTimeout: ConnectionDefenceTests.timeout, socketCap: cap,
                                  logger: .init(label: "test")) { reason in cuts.withLockedValue { $0.append(reason) } }
        }

        /// As the listener does: counted at accept, admitted later on its own loop (`admit`).
        func accepted(on loop: EmbeddedEventLoop) -> EmbeddedChannel {
            let channel = EmbeddedChannel(loop: loop)
            gate.accepted(channel)
            return channel
        }

        func admit(_ channel: EmbeddedChannel) throws -> Bool {
            guard try gate.admit(channel) else {
                _ = try? channel.close().wait()
                return false
            }
            try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
            return true
        }

        func accept(on loop: EmbeddedEventLoop) throws -> EmbeddedChannel {
            let channel = accepted(on: loop)
            #expect(try admit(channel))
            return channel
        }

        /// The connection completes a request head: a client now, never cut to make room.
        func completeHead(_ channel: EmbeddedChannel) throws {
            try channel.pipeline.syncOperations.handler(type: ClientConnectionTracker.self).requestHeadReceived()
        }
    }

    /// At the cap the newcomer's own loop cuts its oldest unfinished connection at once, even
    /// when another loop holds an older one: a cut handed to another loop waits for its turn,
    /// and the cap is passed meanwhile. With none on its own loop, another loop's goes.
    @Test func atTheCapThisLoopsUnfinishedGoesFirstElseAnotherLoops() throws {
        let t = TwoLoops(cap: 2)
        let older = try t.accept(on: t.loopB)
        t.loopA.advanceTime(by: .seconds(1))
        t.loopB.advanceTime(by: .seconds(1))
        let newer = try t.accept(on: t.loopA)
        let third = try t.accept(on: t.loopA)
        #expect(!newer.isActive, "this loop's unfinished connection is cut at once")
        #expect(older.isActive && third.isActive)
        #expect(t.gate.openSockets == 2)
        try t.completeHead(third)
        let fourth = try t.accept(on: t.loopA)
        #expect(older.isActive, "another loop's connection is cut on its own loop")
        #expect(t.gate.openSockets == 3, "until then its descriptor is held")
        t.loopB.run()
        #expect(!older.isActive)
        #expect(third.isActive && fourth.isActive)
        #expect(t.gate.openSockets == 2)
        #expect(t.cuts.withLockedValue { $0 } == [.socketCap, .socketCap])
    }

    /// A cut connection leaves the count as its descriptor closes, not when its handlers are
    /// removed a loop turn later (`run`), and leaves it once.
    @Test func aCutConnectionLeavesTheOpenCountAtOnceAndOnce() throws {
        let h = Harness(cap: 2)
        let first = try #require(try h.accept())
        _ = try #require(try h.accept())
        _ = try #require(try h.accept())
        #expect(!first.isActive)
        #expect(h.gate.openSockets == 2, "before the loop's next turn")
        h.loop.run()
        #expect(h.gate.openSockets == 2)
        h.loop.advanceTime(by: Self.timeout)
        #expect(h.gate.openSockets == 0, "header timeouts leave at once too")
        h.loop.run()
        #expect(h.gate.openSockets == 0 && h.registry.openCount == 0)
        #expect(h.cutReasons == [.socketCap, .headerTimeout, .headerTimeout])
    }

    /// A socket counts from its accept on the listener's loop, before its own loop admits it,
    /// and leaves the in-flight count by its admission, its refusal, or its close before either.
    @Test func anAcceptedSocketCountsFromItsAcceptUntilItIsAdmittedOrClosed() throws {
        let t = TwoLoops(cap: 10)
        let admitted = t.accepted(on: t.loopB)
        let dropped = t.accepted(on: t.loopB)
        #expect(t.gate.openSockets == 2)
        #expect(try t.admit(admitted))
        #expect(t.gate.openSockets == 2, "admitted: counted by its loop now, once")
        _ = try? dropped.close().wait()     // its setup failed: NIO closed it
        t.loopB.run()
        #expect(t.gate.openSockets == 1)
        _ = try? admitted.close().wait()
        t.loopB.run()
        #expect(t.gate.openSockets == 0)
    }

    /// Sockets accepted past the cap and still waiting for their own loop are room to make:
    /// the loop that admits first cuts for them too (one cut per loop at most per admission),
    /// so a loop slow to set its sockets up does not let them pile up past the cap.
    @Test func atTheCapSocketsWaitingForTheirLoopAreMadeRoomForByTheFirstAdmission() throws {
        let t = TwoLoops(cap: 4)
        let residents = try (0..<4).map { _ in try t.accept(on: t.loopA) }
        let waitingOnB = (0..<2).map { _ in t.accepted(on: t.loopB) }
        let newcomer = t.accepted(on: t.loopA)
        #expect(t.gate.openSockets == 7)
        #expect(try t.admit(newcomer))
        #expect(residents.filter(\.isActive).count == 2, "room for itself and one of those waiting")
        #expect(t.gate.openSockets == 5)
        // Loop B has no connection of its own to cut: loop A cuts one on its next turn, and
        // until then the next admission does not cut for the same excess again.
        #expect(try t.admit(waitingOnB[0]))
        #expect(residents.filter(\.isActive).count == 2)
        #expect(t.gate.openSockets == 5)
        #expect(try t.admit(waitingOnB[1]), "its room is being made already")
        t.loopA.run()
        #expect(residents.filter(\.isActive).count == 1)
        #expect(t.gate.openSockets == 4)
        t.loopB.run()
        #expect(t.gate.openSockets == 4)
        #expect(t.cuts.withLockedValue { $0 } == [.socketCap, .socketCap, .socketCap])
    }

    /// A socket refused at the cap (every other one a client) leaves the count as it closes.
    @Test func aRefusedSocketLeavesTheCount() throws {
        let t = TwoLoops(cap: 1)
        let client = try t.accept(on: t.loopA)
        try t.completeHead(client)
        let refused = t.accepted(on: t.loopB)
        #expect(t.gate.openSockets == 2)
        #expect(try !t.admit(refused))
        #expect(!refused.isActive && client.isActive)
        #expect(t.gate.openSockets == 1)
        #expect(t.cuts.withLockedValue { $0 } == [.socketCap])
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
