import ChatCore
import ClusterConfig
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOEmbedded
import Testing

@testable import ChatServer

/// `[engineio]` and `[limits]` replaced under a running node (`ServerContext.applySettings`):
/// new sessions get the new heartbeat times while connected ones keep theirs, the Origin check
/// and payload limit follow at once, the heartbeat wheels retune without losing a deadline, and
/// the socket gate takes a new cap and header timeout.
struct LiveServerSettingsTests {
    let loop = EmbeddedEventLoop()
    let server: ServerContext

    init() {
        let metrics = ServerMetrics()
        let hub = RoomHub(eventLoops: [loop], fanout: LocalFanout(eventLoop: loop), metrics: metrics.chat)
        server = ServerContext(
            nodeName: "test", engine: EngineSettings(), limits: LimitSettings(), hub: hub, metrics: metrics,
            logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }), eventLoops: [loop]
        )
    }

    @Test func aSessionOpenedAfterTheReloadAnnouncesTheNewHeartbeatAndAnOlderOneKeepsItsOwn() {
        let before = EngineSession(eventLoop: loop, transport: .polling, query: [:], server: server)
        var engine = server.engine
        engine.pingInterval = .milliseconds(3000)
        engine.pingTimeout = .milliseconds(2000)
        engine.maxPayload = 5000
        server.applySettings(engine: engine, limits: server.limits)
        loop.run()
        let after = EngineSession(eventLoop: loop, transport: .polling, query: [:], server: server)
        #expect(after.handshake.pingIntervalMs == 3000 && after.handshake.pingTimeoutMs == 2000)
        #expect(before.handshake.pingIntervalMs == EngineSettings().pingInterval.wholeMilliseconds)
        #expect(before.handshake.pingTimeoutMs == EngineSettings().pingTimeout.wholeMilliseconds)
        #expect(after.handshake.maxPayload == 5000)
        // The wheel serves both: its tick is a tenth of the shortest time either uses.
        #expect(server.heartbeatWheel(for: loop).tick == .milliseconds(200))
    }

    /// Sessions opened under each reload keep their times, so the wheels keep serving the
    /// shortest time since the start, not only the last two reloads'.
    @Test func theWheelsServeEveryHeartbeatTimeStillInUse() {
        var engine = server.engine
        engine.pingInterval = .milliseconds(3000)
        engine.pingTimeout = .milliseconds(2000)
        server.applySettings(engine: engine, limits: server.limits)
        engine.pingInterval = .milliseconds(30_000)
        engine.pingTimeout = .milliseconds(30_000)
        server.applySettings(engine: engine, limits: server.limits)
        loop.run()
        #expect(server.heartbeatWheel(for: loop).tick == .milliseconds(200))
    }

    @Test func theOriginCheckFollowsTheReloadedAllowList() {
        #expect(server.isOriginAllowed("https://evil.example"))
        var engine = server.engine
        engine.allowedOrigins = ["https://chat.example.org"]
        server.applySettings(engine: engine, limits: server.limits)
        #expect(!server.isOriginAllowed("https://evil.example"))
        #expect(server.isOriginAllowed("https://chat.example.org"))
        #expect(server.isOriginAllowed(nil))
    }

    @Test func chatLimitsAndTheOutboundBoundChangeTogether() {
        let generation = server.chatLimits.generation
        var limits = server.limits
        limits.textMax = 20
        limits.sayRate = 1
        limits.outboundBuffer = 4096
        server.applySettings(engine: server.engine, limits: limits)
        #expect(server.chatLimits.generation != generation)
        #expect(server.chatLimits.value == ChatLimits(usernameMax: limits.usernameMax, textMax: 20, roomIDMax: limits.roomIDMax,
                                                      sayRate: 1, sayBurst: limits.sayBurst))
        #expect(server.outboundBuffer == 4096)
        #expect(server.limits.maxConnections == limits.maxConnections)
        // A reload that leaves the chat limits alone does not make every session re-read them.
        let now = server.chatLimits.generation
        limits.maxConnections = 7
        server.applySettings(engine: server.engine, limits: limits)
        #expect(server.chatLimits.generation == now)
        #expect(server.limits.maxConnections == 7)
    }

    /// A connected WebSocket's write buffer takes a reloaded `outbound_buffer`.
    @Test func aConnectedWebSocketTakesTheReloadedOutboundBound() throws {
        let channel = EmbeddedChannel(loop: loop)
        let session = EngineSession(eventLoop: loop, transport: .websocket, query: [:], server: server)
        #expect(server.sessions.insert(session, limit: 100))
        session.open(webSocket: channel)
        var limits = server.limits
        limits.outboundBuffer = 4096
        server.applySettings(engine: server.engine, limits: limits)
        loop.run()
        let marks = try channel.getOption(.writeBufferWaterMark).wait()
        #expect(marks.high == 4096 && marks.low == 2048)
        session.close(.serverClose)
        loop.run()
    }

    /// Observers (the socket gate) hear the old and the new `[limits]`.
    @Test func limitsObserversHearOldAndNew() {
        let heard = NIOLockedValueBox<[(Int, Int)]>([])
        server.observeLimits { old, new in heard.withLockedValue { $0.append((old.maxSockets, new.maxSockets)) } }
        var limits = server.limits
        limits.maxSockets = 12
        server.applySettings(engine: server.engine, limits: limits)
        #expect(heard.withLockedValue { $0.map(\.1) } == [12])
        #expect(heard.withLockedValue { $0.map(\.0) } == [LimitSettings().maxSockets])
    }
}

/// The heartbeat wheel retuned to new shortest / longest times keeps every deadline.
struct HeartbeatWheelRetuneTests {
    final class Recorder: HeartbeatWheel.Target {
        var fired: [(generation: UInt32, at: NIODeadline)] = []
        let loop: EmbeddedEventLoop
        init(loop: EmbeddedEventLoop) { self.loop = loop }
        func heartbeatDeadlinePassed(generation: UInt32) { fired.append((generation, loop.now)) }
    }

    @Test func deadlinesSetBeforeARetuneFireOnTimeUnderTheNewTick() {
        let loop = EmbeddedEventLoop()
        let wheel = HeartbeatWheel(eventLoop: loop, shortestDelay: .seconds(5), longestDelay: .seconds(10))
        #expect(wheel.tick == .milliseconds(500))
        let target = Recorder(loop: loop)
        let start = loop.now
        wheel.schedule(target, generation: 1, after: .milliseconds(1_030))
        wheel.schedule(target, generation: 2, after: .seconds(10))
        wheel.retune(shortestDelay: .milliseconds(100), longestDelay: .seconds(20))
        #expect(wheel.tick == .milliseconds(10))
        #expect(wheel.pendingEntries == 2)
        // A new, longer deadline than the old wheel reached.
        wheel.schedule(target, generation: 3, after: .seconds(15))
        loop.advanceTime(by: .milliseconds(1_020))
        #expect(target.fired.isEmpty)
        loop.advanceTime(by: .seconds(20))
        #expect(target.fired.map(\.generation) == [1, 2, 3])
        let due: [TimeAmount] = [.milliseconds(1_030), .seconds(10), .seconds(15)]
        for (fired, delay) in zip(target.fired, due) {
            let late = fired.at - (start + delay)
            #expect(late >= .zero && late < wheel.tick * 2, "generation \(fired.generation) fired \(late) late")
        }
        #expect(wheel.pendingEntries == 0)
    }

    @Test func aRetuneOfAnIdleWheelSchedulesNothing() {
        let loop = EmbeddedEventLoop()
        let wheel = HeartbeatWheel(eventLoop: loop, shortestDelay: .seconds(1), longestDelay: .seconds(2))
        wheel.retune(shortestDelay: .seconds(2), longestDelay: .seconds(4))
        #expect(wheel.tick == .milliseconds(200))
        #expect(wheel.pendingEntries == 0)
        let target = Recorder(loop: loop)
        wheel.schedule(target, generation: 1, after: .seconds(3))
        loop.advanceTime(by: .seconds(4))
        #expect(target.fired.count == 1)
    }
}
