import NIOCore
import NIOEmbedded
import Testing
@testable import RedisFanout

/// Reads of a cluster's slot map are rate-limited: after a failover every link of every node
/// asks at once, and the cluster must not get a read per ask.
@Suite struct RedisClusterFanoutRefresherTests {
    final class Reads: @unchecked Sendable { // touched on the test's embedded loop only
        var starts: [NIODeadline] = []
        var pending: [EventLoopPromise<Void>] = []
    }

    func makeRefresher(_ loop: EmbeddedEventLoop, _ reads: Reads, jitter: TimeAmount = .zero) -> RedisTopologyRefresher {
        RedisTopologyRefresher(eventLoop: loop, jitter: jitter) {
            reads.starts.append(loop.now)
            let promise = loop.makePromise(of: Void.self)
            reads.pending.append(promise)
            return promise.futureResult
        }
    }

    @Test func manyRequestsAtOnceMakeOneRead() {
        let loop = EmbeddedEventLoop()
        let reads = Reads()
        let refresher = makeRefresher(loop, reads)
        for _ in 0..<50 { refresher.request() }
        loop.run()
        #expect(reads.starts.count == 1)
    }

    @Test func requestsDuringAReadMakeOneMoreAfterItAtLeastTheGapLater() {
        let loop = EmbeddedEventLoop()
        let reads = Reads()
        let refresher = makeRefresher(loop, reads)
        refresher.request()
        loop.run()
        for _ in 0..<10 { refresher.request() }
        loop.advanceTime(by: .seconds(1))
        #expect(reads.starts.count == 1) // one in flight at a time
        reads.pending[0].succeed()
        loop.run()
        loop.advanceTime(by: RedisTopologyRefresher.minimumGap)
        #expect(reads.starts.count == 2)
        #expect(reads.starts[1] - reads.starts[0] >= RedisTopologyRefresher.minimumGap)
    }

    @Test func readsInQuickSuccessionAreAtLeastTheGapApart() {
        let loop = EmbeddedEventLoop()
        let reads = Reads()
        let refresher = makeRefresher(loop, reads)
        refresher.request()
        loop.run()
        reads.pending[0].succeed()
        refresher.request()
        loop.advanceTime(by: RedisTopologyRefresher.minimumGap - .milliseconds(1))
        #expect(reads.starts.count == 1)
        loop.advanceTime(by: .milliseconds(1))
        #expect(reads.starts.count == 2)
    }

    @Test func jitterDelaysAStartByAtMostItsAmount() {
        let loop = EmbeddedEventLoop()
        let reads = Reads()
        let refresher = makeRefresher(loop, reads, jitter: .milliseconds(100))
        let asked = loop.now
        refresher.request()
        loop.advanceTime(by: .milliseconds(100))
        #expect(reads.starts.count == 1)
        #expect(reads.starts[0] - asked <= .milliseconds(100))
    }

    @Test func aStoppedRefresherReadsNoMore() {
        let loop = EmbeddedEventLoop()
        let reads = Reads()
        let refresher = makeRefresher(loop, reads, jitter: .milliseconds(50))
        refresher.request()
        refresher.stop()
        loop.advanceTime(by: .seconds(1))
        #expect(reads.starts.isEmpty)
    }
}

extension RedisClusterFanoutRefresherTests {
    @Test func readsThatFindNothingNewBackOffUpToTheMaximumAndSpeedUpAgain() {
        let loop = EmbeddedEventLoop()
        let reads = Reads()
        let refresher = makeRefresher(loop, reads)
        for _ in 0..<6 { refresher.slowDown() }
        #expect(refresher.gap == RedisTopologyRefresher.maximumGap)
        refresher.request()
        loop.run()
        reads.pending[0].succeed()
        refresher.request()
        loop.advanceTime(by: RedisTopologyRefresher.maximumGap - .milliseconds(1))
        #expect(reads.starts.count == 1)
        loop.advanceTime(by: .milliseconds(1))
        #expect(reads.starts.count == 2)
        refresher.speedUp()
        #expect(refresher.gap == RedisTopologyRefresher.minimumGap)
    }
}
