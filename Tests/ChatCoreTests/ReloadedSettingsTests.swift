import NIOCore
import NIOEmbedded
import Testing
@testable import ChatCore

/// What a reload of cluster.conf changes under running sessions: the chat limits (through
/// `LiveSetting`), the say bucket, and the recovery store's bounds.
@Suite struct ReloadedSettingsTests {
    private let second: UInt64 = 1_000_000_000

    // MARK: LiveSetting

    @Test func aReaderSeesANewValueOnlyAfterTheGenerationMoved() {
        let setting = LiveSetting(ChatLimits(textMax: 10))
        var copy = setting.snapshot
        #expect(!setting.refresh(&copy))
        setting.set(ChatLimits(textMax: 3))
        #expect(copy.value.textMax == 10)
        #expect(setting.refresh(&copy))
        #expect(copy.value.textMax == 3)
        #expect(copy.generation == setting.generation)
        #expect(!setting.refresh(&copy))
    }

    // MARK: TokenBucket

    /// Takes `count` tokens at `now` (fewer if the bucket runs dry); returns how many it got.
    private func take(_ bucket: inout TokenBucket, _ count: Int, now: UInt64) -> Int {
        (0..<count).reduce(0) { taken, _ in taken + (bucket.take(now: now) ? 1 : 0) }
    }

    /// The tokens a client had stay, capped to the new burst; refill goes at the new rate.
    @Test func aRetunedBucketKeepsItsTokensCappedToTheNewBurst() {
        var bucket = TokenBucket(rate: 100, burst: 100, now: 0)
        #expect(take(&bucket, 10, now: 0) == 10)  // 90 left
        bucket.retune(rate: 1, burst: 2, now: 0)
        #expect(take(&bucket, 3, now: 0) == 2)
        #expect(take(&bucket, 1, now: second / 2) == 0)
        #expect(take(&bucket, 1, now: second) == 1)  // one token a second now
        #expect(bucket.rate == 1 && bucket.burst == 2)
    }

    @Test func aLargerBurstIsNotAFreeRefill() {
        var bucket = TokenBucket(rate: 1, burst: 2, now: 0)
        #expect(take(&bucket, 2, now: 0) == 2)
        bucket.retune(rate: 1000, burst: 1000, now: 0)
        #expect(take(&bucket, 1, now: 0) == 0, "no tokens were earned yet")
        #expect(take(&bucket, 20, now: second / 100) == 10)  // 10 ms at the new rate
    }

    // MARK: ChatSession

    @Test func aConnectedSessionRefusesATextOverTheReloadedMaximum() {
        let node = Node(echo: false)
        let limits = LiveSetting(ChatLimits(textMax: 10))
        let member = FakeMember("dave")
        let session = ChatSession(roomID: "r1", limits: limits, hub: node.hub, shard: node.shard, member: member, now: ManualClock().now)
        _ = session.handleEvent(name: "join", arguments: [.object([("username", .string("dave"))])], ackID: nil)
        #expect(session.handleEvent(name: "say", arguments: [.object([("text", .string("eight ch"))])], ackID: nil).isEmpty)
        limits.set(ChatLimits(textMax: 5))
        let replies = session.handleEvent(name: "say", arguments: [.object([("text", .string("eight ch"))])], ackID: nil)
        #expect(replies.compactMap(errorReason) == ["text_too_long"])
        #expect(session.handleEvent(name: "say", arguments: [.object([("text", .string("five!"))])], ackID: nil).isEmpty)
        withExtendedLifetime(member) {}
    }

    @Test func aConnectedSessionFollowsTheReloadedSayRate() {
        let node = Node(echo: false)
        let clock = ManualClock()
        let limits = LiveSetting(ChatLimits(sayRate: 1000, sayBurst: 1000))
        let member = FakeMember("dave")
        let session = ChatSession(roomID: "r1", limits: limits, hub: node.hub, shard: node.shard, member: member, now: clock.now)
        _ = session.handleEvent(name: "join", arguments: [.object([("username", .string("dave"))])], ackID: nil)
        let say: () -> [String] = { session.handleEvent(name: "say", arguments: [.object([("text", .string("x"))])], ackID: nil).compactMap(errorReason) }
        for _ in 0..<5 { #expect(say().isEmpty) }
        limits.set(ChatLimits(sayRate: 1, sayBurst: 1))
        #expect(say().isEmpty)
        #expect(say() == ["rate_limited"])
        clock.advance(milliseconds: 1000)
        #expect(say().isEmpty)
        withExtendedLifetime(member) {}
    }

    /// A username is checked against the limits as of the join.
    @Test func aJoinAfterTheReloadIsCheckedAgainstTheNewUsernameMaximum() {
        let node = Node(echo: false)
        let limits = LiveSetting(ChatLimits(usernameMax: 64))
        let member = FakeMember("dave")
        let session = ChatSession(roomID: "r1", limits: limits, hub: node.hub, shard: node.shard, member: member, now: ManualClock().now)
        limits.set(ChatLimits(usernameMax: 3))
        let replies = session.handleEvent(name: "join", arguments: [.object([("username", .string("dave"))])], ackID: nil)
        #expect(replies.compactMap(errorReason) == ["invalid_username"])
        withExtendedLifetime(member) {}
    }

    // MARK: RecoveryStore

    @Test func smallerRecoveryBoundsEvictAtOnce() {
        let wall = ManualWallClock()
        let node = StoreNode("n1", epoch: 1, policy: RecoveryPolicy(maxDisconnection: .seconds(10), roomMessages: 100,
                                                                     historyBytes: 1 << 20, catchUp: .zero), wall: wall)
        for n in 1...10 { node.deliver("\(n)", from: MessageOrigin(origin: 5, sequence: UInt64(n))) }
        #expect(node.store.messagesKept == 10)
        node.store.apply(policy: RecoveryPolicy(maxDisconnection: .seconds(10), roomMessages: 4, historyBytes: 1 << 20, catchUp: .seconds(3)))
        #expect(node.store.messagesKept == 4)
        #expect(node.store.policy.catchUp == .seconds(3))
        // A new message is kept under the new bound too.
        node.deliver("11", from: MessageOrigin(origin: 5, sequence: 11))
        #expect(node.store.messagesKept == 4)
    }

    /// A shorter max_disconnection expires a held session at the next sweep, which now comes
    /// sooner; origins are never forgotten sooner than under the old bound.
    @Test func aShorterMaxDisconnectionExpiresHeldSessionsSooner() {
        let wall = ManualWallClock()
        let node = StoreNode("n1", epoch: 1, policy: RecoveryPolicy(maxDisconnection: .seconds(60), roomMessages: 100,
                                                                     historyBytes: 1 << 20, catchUp: .zero), wall: wall)
        let oldSilence = node.store.policy.originSilence
        let session = node.store.open(room: "r1", session: FakeRecoverableSession())
        node.store.joined(pid: session.pid, username: "u")
        node.store.detached(pid: session.pid)
        node.advance(2_000, wall: wall)
        #expect(node.store.record(pid: session.pid)?.isHeld == true)
        node.store.apply(policy: RecoveryPolicy(maxDisconnection: .seconds(1), roomMessages: 100, historyBytes: 1 << 20, catchUp: .zero))
        #expect(node.store.sweepInterval == .milliseconds(100))
        node.advance(200, wall: wall)
        #expect(node.store.record(pid: session.pid)?.isHeld != true)
        #expect(node.announced.contains(.quit(room: "r1", username: "u")))
        #expect(node.store.policy.originSilence == oldSilence)
    }
}
