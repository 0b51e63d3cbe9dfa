import NIOConcurrencyHelpers
import NIOCore
import NIOEmbedded
@testable import ChatCore

/// A wall clock (ms since 1970) the test moves by hand, shared by a test's stores.
final class ManualWallClock: Sendable {
    private let millis: NIOLockedValueBox<Int64>

    init(_ start: Int64 = 1_800_000_000_000) {
        millis = NIOLockedValueBox(start)
    }

    var now: Int64 { millis.withLockedValue { $0 } }
    func advance(milliseconds: Int64) { millis.withLockedValue { $0 += milliseconds } }
    var function: @Sendable () -> Int64 { { self.now } }
}

/// A connection holding a session: counts how often it was told it was taken over.
final class FakeRecoverableSession: RecoverableSession, @unchecked Sendable { // one test thread
    let name: String
    private(set) var takenOverCount = 0

    init(_ name: String = "session") {
        self.name = name
    }

    func sessionTakenOver() {
        takenOverCount += 1
    }
}

/// The mesh as the store sees it: which peers are up, and every record it was asked to send.
final class FakeReplication: SessionReplication, @unchecked Sendable { // one test thread
    var liveNodeNames: Set<String> = []
    var liveOrigins: Set<UInt32> = []
    private(set) var replicated: [SessionRecord] = []

    func replicate(_ record: SessionRecord) {
        replicated.append(record)
    }

    func peer(_ name: String, epoch: UInt64, up: Bool) {
        if up {
            liveNodeNames.insert(name)
            liveOrigins.insert(MessageOrigin.originID(epoch: epoch))
        } else {
            liveNodeNames.remove(name)
            liveOrigins.remove(MessageOrigin.originID(epoch: epoch))
        }
    }
}

/// One node's store on its own embedded loop, with a wall clock shared across a test's nodes
/// and what it announced (quits, and joins of sessions recovered elsewhere after a quit).
final class StoreNode {
    let name: String
    let epoch: UInt64
    let loop: EmbeddedEventLoop
    let store: RecoveryStore
    let metrics = RecoveryMetrics()
    let replication = FakeReplication()
    private(set) var announced: [ChatMessage] = []

    init(_ name: String, epoch: UInt64, policy: RecoveryPolicy = StoreNode.policy, wall: ManualWallClock,
         loop: EmbeddedEventLoop = EmbeddedEventLoop(), replicated: Bool = true) {
        self.name = name
        self.epoch = epoch
        self.loop = loop
        store = RecoveryStore(policy: policy, eventLoop: loop, localNode: name, epoch: epoch, metrics: metrics, wallClock: wall.function)
        if replicated { store.replication = replication }
        store.publishChat = { [unowned self] message in self.announced.append(message) }
    }

    static let policy = RecoveryPolicy(maxDisconnection: .milliseconds(10_000), roomMessages: 100, historyBytes: 1 << 20,
                                       catchUp: .milliseconds(200))

    var origin: UInt32 { store.localOrigin }

    /// Delivers a say from `origin` (nil: this node's own) and returns its offset.
    @discardableResult
    func deliver(_ text: String, room: String = "r1", from origin: MessageOrigin? = nil) -> String {
        var broadcast = ChatBroadcast(.say(room: room, username: "u", text: text))
        broadcast.origin = origin
        return offset(of: store.stamp(broadcast, arrivedAt: loop.now))
    }

    /// Moves both clocks: the loop's (timers, message ages) and the wall clock (session times).
    func advance(_ milliseconds: Int64, wall: ManualWallClock) {
        wall.advance(milliseconds: milliseconds)
        loop.advanceTime(by: .milliseconds(milliseconds))
    }

    func recover(pid: String, offset: String?, room: String = "r1", session: FakeRecoverableSession = FakeRecoverableSession()) -> RecoveryOutcome? {
        var outcome: RecoveryOutcome?
        store.recover(pid: pid, offset: offset, room: room, session: session) { outcome = $0 }
        return outcome
    }
}

/// The offset a stamped frame carries: its last argument.
func offset(of broadcast: ChatBroadcast) -> String {
    offset(ofFrame: broadcast.engineFrame)
}

func offset(ofFrame frame: ByteBuffer) -> String {
    let text = String(buffer: frame)
    guard text.hasSuffix("\"]"), let quote = text.dropLast(2).lastIndex(of: "\"") else { return "" }
    return String(text[text.index(after: quote)..<text.index(text.endIndex, offsetBy: -2)])
}

/// The say text of a stamped frame.
func text(ofFrame frame: ByteBuffer) -> String {
    let body = String(buffer: frame)
    guard let start = body.range(of: #""text":""#), let end = body[start.upperBound...].firstIndex(of: "\"") else { return "?" }
    return String(body[start.upperBound..<end])
}

extension RecoveryOutcome {
    var failure: RecoveryFailure? {
        if case .failed(let reason) = self { return reason }
        return nil
    }

    var recoveredRecord: SessionRecord? {
        if case .recovered(let record, _, _) = self { return record }
        return nil
    }

    var missedTexts: [String] {
        if case .recovered(_, let missed, _) = self { return missed.map(text(ofFrame:)) }
        return []
    }
}
