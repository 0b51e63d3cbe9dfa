import ChatCore
import ClusterConfig
import Logging
import NIOCore
import NIOEmbedded
import NIOPosix
import Foundation
import SocketIO
import Testing
@testable import RedisFanout

/// What the node sees of the Redis adapter through the `Fanout` lifecycle: before Redis
/// answers, not ready, and a drain that waits for unpublished says until its deadline; once
/// connected (embedded channels standing in for Redis), a drain that ends with the last reply.
/// (Behaviour against a real redis-server is covered by the integration suites.)
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

    /// Both connections up on embedded channels, past the publish grace.
    func connect(_ fanout: RedisFanout, on loop: EmbeddedEventLoop) throws -> (subscriber: EmbeddedChannel, publisher: EmbeddedChannel) {
        func link(_ role: RedisLink.Role) throws -> EmbeddedChannel {
            let channel = EmbeddedChannel(handler: RedisLink(role: role, owner: fanout, setup: []), loop: loop)
            try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 6379)).wait()
            return channel
        }
        let channels = (subscriber: try link(.subscriber), publisher: try link(.publisher))
        loop.advanceTime(by: RedisFanout.publishGrace)
        return channels
    }

    @Test func drainCompletesTheMomentTheLastPublishIsAnswered() throws {
        let loop = EmbeddedEventLoop()
        let fanout = makeFanout(on: loop)
        let link = try connect(fanout, on: loop)
        fanout.publish(ChatMessage(room: "r", eventJSON: #"{"event":"message","data":{"text":"one"}}"#))
        fanout.publish(ChatMessage(room: "r", eventJSON: #"{"event":"message","data":{"text":"two"}}"#))
        loop.run()
        var written = ByteBufferAllocator().buffer(capacity: 0)
        while var chunk = try link.publisher.readOutbound(as: ByteBuffer.self) { written.writeBuffer(&chunk) }
        #expect(String(buffer: written).components(separatedBy: "PUBLISH").count == 3)

        let started = loop.now
        let drained = watch(fanout.drain(deadline: started + .seconds(5)))
        loop.run()
        #expect(!drained.done)
        try link.publisher.writeInbound(buffer(":1\r\n"))
        #expect(!drained.done) // one PUBLISH still unanswered
        try link.publisher.writeInbound(buffer(":1\r\n"))
        // Done on reading the reply: the clock has not moved, so no poll and no deadline did it.
        #expect(drained.done)
        #expect(loop.now == started)
    }

    @Test func drainWithEverythingAnsweredCompletesAtOnceWhileConnected() throws {
        let loop = EmbeddedEventLoop()
        let fanout = makeFanout(on: loop)
        let link = try connect(fanout, on: loop)
        fanout.publish(ChatMessage(room: "r", eventJSON: #"{"event":"message","data":{"text":"hi"}}"#))
        loop.run()
        try link.publisher.writeInbound(buffer(":0\r\n"))
        let drained = watch(fanout.drain(deadline: loop.now + .seconds(5)))
        loop.run()
        #expect(drained.done)
    }

    @Test func stopCompletesWithoutAConnection() {
        let loop = EmbeddedEventLoop()
        let stopped = watch(makeFanout(on: loop).stop())
        loop.run()
        #expect(stopped.done)
    }
}

extension RedisFanoutLifecycleTests {
    /// A reload of `[redis] buffer_messages` takes effect at once: what waits beyond the new
    /// count is dropped, oldest first, and the rest is published in order once Redis answers.
    @Test func aSmallerBufferAppliedLiveDropsTheOldestWaitingSays() throws {
        let loop = EmbeddedEventLoop()
        let fanout = makeFanout(on: loop)
        for text in ["one", "two", "three"] {
            fanout.publish(ChatMessage(room: "r", eventJSON: #"{"event":"message","data":{"text":"\#(text)"}}"#))
        }
        loop.run()
        let line = fanout.applyBuffer(messages: 1, time: .seconds(10))
        loop.run()
        let said = try line.wait()
        #expect(said == "redis buffer: 100 messages, 10000 ms -> 1 messages, 10000 ms (2 buffered says dropped)")
        let link = try connect(fanout, on: loop)
        loop.run()
        var written = ByteBufferAllocator().buffer(capacity: 0)
        while var chunk = try link.publisher.readOutbound(as: ByteBuffer.self) { written.writeBuffer(&chunk) }
        let text = String(buffer: written)
        #expect(text.components(separatedBy: "PUBLISH").count == 2)
        #expect(text.contains("three"))
        #expect(!text.contains("one"))
    }
}

extension RedisFanoutLifecycleTests {
    /// Classic mode on a cluster names several nodes: a dead first one is skipped, and both
    /// connections end on the next (a fake node on loopback; the dead one a closed port).
    @Test func aDeadFirstSeedIsSkippedForTheNext() throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let live = try RedisClusterFanoutRedirectTests.FakeNode(group: group) { _ in [.integer(1)] }
        defer { live.close() }
        let closed = try RedisClusterFanoutRedirectTests.FakeNode(group: group) { _ in [] }
        let deadAddress = closed.address
        closed.close()
        var url = RedisURL(host: deadAddress.host, port: deadAddress.port)
        url.cluster = true
        url.seeds = [deadAddress, live.address]
        let fanout = RedisFanout(url: url, channelPrefix: "", bufferMessages: 100, bufferTime: .seconds(10), eventLoop: group.next(),
                                 logger: Logger(label: "redis-test", factory: { _ in SwiftLogNoOpLogHandler() }))
        fanout.start(delivery: RedisClusterFanoutRedirectTests.NoDelivery())
        try fanout.start(FanoutStartContext())
        defer { _ = try? fanout.stop().wait() }
        fanout.subscribe(room: "lobby")
        let deadline = ContinuousClock.now + .seconds(5)
        while ContinuousClock.now < deadline && (!fanout.health.isReady || live.sent("SUBSCRIBE").isEmpty) {
            Thread.sleep(forTimeInterval: 0.02)
        }
        #expect(fanout.health.isReady)
        #expect(live.sent("SUBSCRIBE").map { $0[1] } == ["lobby"])
    }
}
