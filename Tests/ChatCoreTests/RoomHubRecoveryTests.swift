import NIOCore
import NIOEmbedded
import SocketIO
import Testing
@testable import ChatCore

/// The chat layer with recovery on: broadcasts are stamped with offsets on the store's loop,
/// a restored session is back in its room without a join, a held one leaves without a quit,
/// and a restored member joins as of its history snapshot.
@Suite("RoomHub with recovery")
struct RoomHubRecoveryTests {
    let wall = ManualWallClock()

    /// A one-loop node with a store; the fanout echoes publishes straight back, as LocalFanout.
    struct RecoveringNode {
        let loop = EmbeddedEventLoop()
        let fanout = RecordingFanout(echo: true)
        let store: RecoveryStore
        let hub: RoomHub

        init(wall: ManualWallClock) {
            store = RecoveryStore(policy: StoreNode.policy, eventLoop: loop, localNode: "n1", epoch: 1, metrics: RecoveryMetrics(),
                                  wallClock: wall.function)
            hub = RoomHub(eventLoops: [loop], fanout: fanout, metrics: ChatMetrics(), maxWriteDelay: .zero, recovery: store)
        }

        func session(_ member: FakeMember, restoredUsername: String? = nil, restoredAt: NIODeadline? = nil,
                     onJoined: ((String) -> Void)? = nil) -> ChatSession {
            ChatSession(roomID: "r1", limits: ChatLimits(), hub: hub, shard: hub.shards[0], member: member,
                        now: ManualClock().now, restoredUsername: restoredUsername, restoredAt: restoredAt, onJoined: onJoined)
        }
    }

    @Test func membersGetEveryBroadcastWithTheOffsetAfterIt() {
        let node = RecoveringNode(wall: wall)
        let member = FakeMember("a")
        let chat = node.session(member)
        _ = chat.handleEvent(name: "join", arguments: [.object([("username", .string("a"))])], ackID: nil)
        _ = chat.handleEvent(name: "say", arguments: [.object([("text", .string("hi"))])], ackID: nil)
        node.loop.run()
        let origin = String(node.store.localOrigin, radix: 36)
        #expect(member.frames == [
            #"42["message",{"event":"join","data":{"username":"a"}},"\#(origin).1"]"#,
            #"42["message",{"event":"broadcast_say","data":{"username":"a","text":"hi"}},"\#(origin).2"]"#,
        ])
        #expect(node.hub.recovery === node.store)
        #expect((node.hub as any FanoutDelivery).recovery === node.store)
    }

    @Test func withoutRecoveryTheWireIsUnchanged() {
        let plain = Node()
        #expect(plain.hub.recovery == nil)
        let client = Client(node: plain)
        client.join("a")
        plain.runAll()
        #expect(client.member.frames == [joinFrame("a")])
    }

    @Test func anExpiredSessionsQuitIsPublishedThroughTheFanout() {
        let node = RecoveringNode(wall: wall)
        let record = node.store.open(room: "r1", session: FakeRecoverableSession())
        node.store.joined(pid: record.pid, username: "alice")
        node.store.detached(pid: record.pid)
        wall.advance(milliseconds: 11_000)
        node.loop.advanceTime(by: .seconds(11))
        #expect(node.fanout.published == [.quit(room: "r1", username: "alice")])
    }

    @Test func joinTellsOnJoinedAndADetachedSessionLeavesWithoutAQuit() {
        let node = RecoveringNode(wall: wall)
        let watcher = FakeMember("w"), member = FakeMember("a")
        let watching = node.session(watcher)
        _ = watching.handleEvent(name: "join", arguments: [.object([("username", .string("w"))])], ackID: nil)
        var joinedAs: [String] = []
        var publishedBeforeCallback = -1
        var memberBeforeCallback = false
        let chat = node.session(member, onJoined: { name in
            joinedAs.append(name)
            publishedBeforeCallback = node.fanout.published.count
            memberBeforeCallback = node.hub.shards[0].memberCount(of: "r1") == 2
        })
        node.fanout.reset()
        _ = chat.handleEvent(name: "join", arguments: [.object([("username", .string("a"))])], ackID: nil)
        #expect(joinedAs == ["a"])
        #expect(publishedBeforeCallback == 0)
        #expect(memberBeforeCallback)
        #expect(node.fanout.published == [.join(room: "r1", username: "a")])
        node.fanout.reset()
        #expect(chat.detach() == "a")
        #expect(!chat.isJoined)
        #expect(node.hub.shards[0].memberCount(of: "r1") == 1)
        chat.leave()
        #expect(chat.detach() == nil)
        #expect(node.fanout.published.isEmpty)
    }

    @Test func aRestoredSessionIsInItsRoomWithoutAJoinAndSaysAsItsUser() {
        let node = RecoveringNode(wall: wall)
        let member = FakeMember("a")
        var joinedAs: [String] = []
        let chat = node.session(member, restoredUsername: "alice", restoredAt: NIODeadline.now(), onJoined: { joinedAs.append($0) })
        #expect(chat.isJoined)
        #expect(chat.username == "alice")
        #expect(node.hub.shards[0].memberCount(of: "r1") == 1)
        #expect(node.fanout.calls == [.subscribe("r1")])
        let replies = chat.handleEvent(name: "join", arguments: [.object([("username", .string("again"))])], ackID: nil)
        #expect(replies.compactMap(errorReason) == ["already_joined"])
        _ = chat.handleEvent(name: "say", arguments: [.object([("text", .string("back"))])], ackID: nil)
        node.loop.run()
        #expect(node.fanout.published == [.say(room: "r1", username: "alice", text: "back")])
        #expect(member.frames.count == 1)
        #expect(joinedAs.isEmpty)
        chat.leave()
        #expect(node.fanout.published.last == .quit(room: "r1", username: "alice"))
    }

    @Test func aRestoredSessionWithoutRestoredAtLeavesTheRoomJoinToTheCaller() {
        let node = RecoveringNode(wall: wall)
        let chat = node.session(FakeMember("a"), restoredUsername: "alice")
        #expect(chat.isJoined)
        #expect(node.hub.shards[0].memberCount(of: "r1") == 0)
    }

    @Test func aMemberJoinedAsOfAnEarlierTimeGetsBroadcastsThatArrivedAfterIt() {
        let loop = EmbeddedEventLoop()
        let shard = RoomShard(eventLoop: loop, metrics: ChatMetrics(), maxWriteDelay: .zero)
        let arrived = NIODeadline.now()
        let late = FakeMember("joined now"), restored = FakeMember("restored as of before")
        shard.add(late, to: "r1")
        shard.add(restored, to: "r1", joinedAt: arrived - .nanoseconds(1))
        shard.deliver(ChatBroadcast(.say(room: "r1", username: "x", text: "in flight")), arrivedAt: arrived)
        loop.run()
        #expect(restored.frames == [sayFrame("x", "in flight")])
        #expect(late.frames.isEmpty)
    }

    /// The store on loop 0, the recovering connection on loop 1: a broadcast stamped before the
    /// snapshot comes in the replay only; one stamped after it, still hopping to loop 1 when the
    /// member joins there, comes live. Each exactly once.
    @Test func aRecoveredMemberOnAnotherLoopGetsEachBroadcastOnceAroundTheSnapshot() throws {
        let world = LoopWorld()
        let storeLoop = ManualEventLoop("store", world: world), memberLoop = ManualEventLoop("member", world: world)
        let store = RecoveryStore(policy: StoreNode.policy, eventLoop: storeLoop, localNode: "n1", epoch: 1,
                                  metrics: RecoveryMetrics(), wallClock: wall.function)
        let hub = RoomHub(eventLoops: [storeLoop, memberLoop], fanout: RecordingFanout(), metrics: ChatMetrics(),
                          maxWriteDelay: .zero, recovery: store)
        let member = FakeMember("recovered")
        let boundMember = memberLoop.enter { NIOLoopBound(member, eventLoop: memberLoop) }
        let record = storeLoop.enter { () -> SessionRecord in
            let record = store.open(room: "r1", session: FakeRecoverableSession())
            store.joined(pid: record.pid, username: "alice")
            store.detached(pid: record.pid)
            return record
        }
        var missed: [String] = []
        storeLoop.enter {
            hub.deliverLocally(ChatBroadcast(.say(room: "r1", username: "b", text: "before")))
            store.recover(pid: record.pid, offset: nil, room: "r1", session: FakeRecoverableSession()) { outcome in
                guard case .recovered(let record, let frames, let snapshotAt) = outcome else { return }
                missed = frames.map(text(ofFrame:))
                memberLoop.execute {
                    _ = ChatSession(roomID: "r1", limits: ChatLimits(), hub: hub, shard: hub.shards[1], member: boundMember.value,
                                    now: ManualClock().now, restoredUsername: record.username, restoredAt: snapshotAt)
                }
            }
            hub.deliverLocally(ChatBroadcast(.say(room: "r1", username: "b", text: "after")))
        }
        #expect(memberLoop.pendingTasks == 3)
        memberLoop.run()
        storeLoop.run()
        #expect(missed == ["before"])
        #expect(member.frames.map { text(ofFrame: ByteBuffer(string: $0)) } == ["after"])
    }
}
