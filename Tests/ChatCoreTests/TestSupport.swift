import NIOCore
import NIOEmbedded
import SocketIO
@testable import ChatCore

/// A connection stand-in: records every batch the shard hands it.
final class FakeMember: RoomMember {
    let name: String
    /// Every Engine.IO frame delivered so far, in order.
    private(set) var frames: [String] = []
    /// The frames of each batch, one entry per write (and flush).
    private(set) var flushedBatches: [[String]] = []
    /// Each batch's transport bytes, as built by the shard's framer.
    private(set) var transportBatches: [String] = []
    /// Runs after each batch, so a test can make a member leave mid-delivery.
    var onDeliver: ((FakeMember) -> Void)?

    init(_ name: String = "member") {
        self.name = name
    }

    var flushCount: Int { flushedBatches.count }
    var flushedFrames: [String] { flushedBatches.flatMap { $0 } }

    func deliver(_ batch: RoomBatch) {
        let texts = batch.engineFrames.map { String(buffer: $0) }
        frames += texts
        flushedBatches.append(texts)
        transportBatches.append(String(buffer: batch.transportBytes))
        onDeliver?(self)
    }
}

/// A fanout that records what the hub asks of it and, when `echo` is on, delivers each
/// published message back through the hub at once, as `LocalFanout` does.
// @unchecked: each test drives it from one thread (embedded loops run inline).
final class RecordingFanout: Fanout, @unchecked Sendable {
    enum Call: Equatable, CustomStringConvertible {
        case subscribe(String)
        case unsubscribe(String)
        case publish(room: String, json: String)

        var description: String {
            switch self {
            case .subscribe(let room): return "subscribe(\(room))"
            case .unsubscribe(let room): return "unsubscribe(\(room))"
            case .publish(let room, let json): return "publish(\(room), \(json))"
            }
        }
    }

    var echo: Bool
    private(set) var calls: [Call] = []
    private(set) var startCount = 0
    private(set) weak var delivery: (any FanoutDelivery)?

    init(echo: Bool = false) {
        self.echo = echo
    }

    var published: [ChatMessage] {
        calls.compactMap {
            if case .publish(let room, let json) = $0 { return ChatMessage(room: room, eventJSON: json) }
            return nil
        }
    }

    var subscriptionCalls: [Call] {
        calls.filter { if case .publish = $0 { return false } else { return true } }
    }

    func reset() { calls.removeAll() }

    func start(delivery: any FanoutDelivery) {
        startCount += 1
        self.delivery = delivery
    }

    func subscribe(room: String) { calls.append(.subscribe(room)) }
    func unsubscribe(room: String) { calls.append(.unsubscribe(room)) }

    func publish(_ message: ChatMessage) {
        calls.append(.publish(room: message.room, json: message.eventJSON))
        if echo { delivery?.deliverLocally(ChatBroadcast(message)) }
    }

    // The lifecycle has nothing to wait for here; the hub never drives it.
    private let lifecycleLoop = EmbeddedEventLoop()
    func start(_ context: FanoutStartContext) throws {}
    func drain(deadline: NIODeadline) -> EventLoopFuture<Void> { lifecycleLoop.makeSucceededVoidFuture() }
    func stop() -> EventLoopFuture<Void> { lifecycleLoop.makeSucceededVoidFuture() }
    var health: FanoutHealth { FanoutHealth(isReady: true) }
}

/// A monotonic clock the test moves by hand (nanoseconds).
final class ManualClock {
    var nanos: UInt64

    init(nanos: UInt64 = 1_000_000_000) {
        self.nanos = nanos
    }

    func advance(milliseconds: UInt64) { nanos += milliseconds * 1_000_000 }
    var now: () -> UInt64 { { self.nanos } }
}

/// One node: a hub over `loopCount` embedded event loops with a recording fanout.
struct Node {
    let loops: [EmbeddedEventLoop]
    let fanout: RecordingFanout
    let hub: RoomHub

    init(loops loopCount: Int = 1, echo: Bool = true) {
        loops = (0..<loopCount).map { _ in EmbeddedEventLoop() }
        fanout = RecordingFanout(echo: echo)
        hub = RoomHub(eventLoops: loops, fanout: fanout, metrics: ChatMetrics(), maxWriteDelay: .zero)
    }

    var shard: RoomShard { hub.shards[0] }

    func runAll() {
        for loop in loops { loop.run() }
    }
}

/// A member with its chat session, as one client connection would hold them.
final class Client {
    let member: FakeMember
    let session: ChatSession

    init(node: Node, room: String = "r1", shard: Int = 0, limits: ChatLimits = ChatLimits(), clock: ManualClock = ManualClock(), name: String = "client") {
        member = FakeMember(name)
        session = ChatSession(roomID: room, limits: limits, hub: node.hub, shard: node.hub.shards[shard], member: member, now: clock.now)
    }

    @discardableResult
    func emit(_ name: String, _ arguments: [JSONValue], ack: Int? = nil) -> [SocketPacket] {
        session.handleEvent(name: name, arguments: arguments, ackID: ack)
    }

    @discardableResult
    func join(_ username: String, ack: Int? = nil) -> [SocketPacket] {
        emit("join", [.object([("username", .string(username))])], ack: ack)
    }

    @discardableResult
    func say(_ text: String, ack: Int? = nil) -> [SocketPacket] {
        emit("say", [.object([("text", .string(text))])], ack: ack)
    }
}

/// The frame every member receives for an event JSON.
func frame(_ eventJSON: String) -> String {
    #"42["message","# + eventJSON + "]"
}

func joinFrame(_ username: String) -> String {
    frame(#"{"event":"join","data":{"username":""# + username + #""}}"#)
}

func sayFrame(_ username: String, _ text: String) -> String {
    frame(#"{"event":"broadcast_say","data":{"username":""# + username + #"","text":""# + text + #""}}"#)
}

func quitFrame(_ username: String) -> String {
    frame(#"{"event":"broadcast_quit","data":{"username":""# + username + #""}}"#)
}

/// The wire text of the replies a session returned.
func wire(_ packets: [SocketPacket]) -> [String] {
    packets.map { SocketPacketCodec.encode($0) }
}

/// The `reason` of an `error` event reply, or nil if the packet is something else.
func errorReason(_ packet: SocketPacket) -> String? {
    guard let (name, arguments) = packet.eventNameAndArguments, name == "error" else { return nil }
    return arguments.first?["reason"]?.stringValue
}

/// The `error` field of an ack reply `{ok:false,error:...}`, or nil.
func ackError(_ packet: SocketPacket) -> String? {
    guard packet.type == .ack, case .array(let arguments)? = packet.data else { return nil }
    guard arguments.first?["ok"] == .bool(false) else { return nil }
    return arguments.first?["error"]?.stringValue
}

/// A string of `count` copies of `scalar`.
func repeated(_ scalar: String, _ count: Int) -> String {
    String(repeating: scalar, count: count)
}
