import ChatCore
import ClusterConfig
import Logging
import NIOCore
import NIOEmbedded
import SocketIO
import Testing
@testable import RedisFanout

/// What the node sees of the Redis adapter through the `Fanout` lifecycle before Redis
/// answers: not ready, and a drain that waits for unpublished says until its deadline.
/// (Connected behaviour is covered by the integration suites against a real redis-server.)
@Suite struct RedisFanoutLifecycleTests {
    func makeFanout(on loop: EmbeddedEventLoop) -> RedisFanout {
        RedisFanout(url: RedisURL(host: "127.0.0.1"), channelPrefix: "", bufferMessages: 100, bufferTime: .seconds(10),
                    eventLoop: loop, logger: Logger(label: "redis-test", factory: { _ in SwiftLogNoOpLogHandler() }))
    }

    final class Completion: @unchecked Sendable { // touched on the test's embedded loop only
        var done = false
    }

    func watch(_ future: EventLoopFuture<Void>) -> Completion {
        let completion = Completion()
        future.whenComplete { _ in completion.done = true }
        return completion
    }

    @Test func withoutItsSubscriberTheNodeIsNotReadyAndSaysRedisDown() {
        let health = makeFanout(on: EmbeddedEventLoop()).health
        #expect(!health.isReady)
        #expect(health.statusLine == "redis down")
        #expect(health.details.count == 1)
        #expect(health.details.first?.0 == "redis")
        #expect(health.details.first?.1 == .string("down"))
    }

    @Test func drainWithNothingPublishedCompletesAtOnce() {
        let loop = EmbeddedEventLoop()
        let drained = watch(makeFanout(on: loop).drain(deadline: loop.now + .seconds(5)))
        loop.run()
        #expect(drained.done)
    }

    @Test func drainWaitsForAnUnpublishedSayUntilTheDeadline() {
        let loop = EmbeddedEventLoop()
        let fanout = makeFanout(on: loop)
        fanout.publish(ChatMessage(room: "r", eventJSON: #"{"event":"message","data":{"text":"hi"}}"#))
        loop.run()
        let drained = watch(fanout.drain(deadline: loop.now + .milliseconds(300)))
        loop.run()
        loop.advanceTime(by: .milliseconds(299))
        #expect(!drained.done)
        loop.advanceTime(by: .milliseconds(1))
        #expect(drained.done)
    }

    @Test func stopCompletesWithoutAConnection() {
        let loop = EmbeddedEventLoop()
        let stopped = watch(makeFanout(on: loop).stop())
        loop.run()
        #expect(stopped.done)
    }
}
