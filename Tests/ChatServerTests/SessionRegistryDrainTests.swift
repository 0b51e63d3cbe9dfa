import ChatCore
import ClusterConfig
import Logging
import NIOCore
import NIOEmbedded
import Testing

@testable import ChatServer

/// A draining node gives its clients a grace period to leave: the wait ends when the last
/// session is removed, not at a later check, or at the grace deadline if some stay.
struct SessionRegistryDrainTests {
    /// The future's value, once it has one.
    final class Outcome: @unchecked Sendable { // read and written on the test's embedded loop only
        var value: Bool?
    }

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

    func registered(_ count: Int) -> [EngineSession] {
        (0..<count).map { _ in
            let session = EngineSession(eventLoop: loop, transport: .polling, query: [:], server: server)
            #expect(server.sessions.insert(session, limit: 100))
            return session
        }
    }

    func watch(_ future: EventLoopFuture<Bool>) -> Outcome {
        let outcome = Outcome()
        future.whenSuccess { outcome.value = $0 }
        return outcome
    }

    @Test func anEmptyRegistryEndsTheWaitAtOnce() {
        let outcome = watch(server.sessions.whenEmpty(on: loop, deadline: loop.now + .seconds(2)))
        loop.run()
        #expect(outcome.value == true)
    }

    @Test func theWaitEndsWhenTheLastSessionIsRemovedWithoutTheClockMoving() {
        let sessions = registered(2)
        let started = loop.now
        let outcome = watch(server.sessions.whenEmpty(on: loop, deadline: started + .seconds(2)))
        loop.run()
        server.sessions.remove(sessions[0].sid)
        #expect(outcome.value == nil)
        server.sessions.remove(sessions[0].sid) // removing it twice does not count twice
        #expect(outcome.value == nil)
        server.sessions.remove(sessions[1].sid)
        #expect(outcome.value == true)
        #expect(loop.now == started)
        loop.advanceTime(by: .seconds(3)) // the cancelled deadline changes nothing
        #expect(outcome.value == true)
    }

    @Test func aSessionThatStaysEndsTheWaitAtTheDeadlineWithFalse() {
        let sessions = registered(1)
        let outcome = watch(server.sessions.whenEmpty(on: loop, deadline: loop.now + .milliseconds(500)))
        loop.advanceTime(by: .milliseconds(499))
        #expect(outcome.value == nil)
        loop.advanceTime(by: .milliseconds(1))
        #expect(outcome.value == false)
        server.sessions.remove(sessions[0].sid) // too late: the wait is over
        #expect(outcome.value == false)
    }
}
