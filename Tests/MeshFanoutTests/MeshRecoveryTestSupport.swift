import ChatCore
import ClusterConfig
import Logging
import NIOCore
import NIOEmbedded
import Testing
@testable import MeshFanout

/// What a recovery-on hub does with a delivery (RoomHub.deliverLocally): stamps it through the
/// store on the store's loop, and here records it instead of writing it to members.
final class StampingDelivery: FanoutDelivery, @unchecked Sendable { // used on the node's embedded loop only
    struct Delivered: Equatable {
        var room: String
        var origin: MessageOrigin?
        /// The engine frame as members get it: `42["message",{…},"<offset>"]`.
        var frame: String
    }

    let store: RecoveryStore
    private(set) var delivered: [Delivered] = []

    init(store: RecoveryStore) { self.store = store }

    var recovery: RecoveryStore? { store }

    func deliverLocally(_ broadcast: ChatBroadcast) {
        store.eventLoop.preconditionInEventLoop()
        let stamped = store.stamp(broadcast, arrivedAt: .now())
        delivered.append(Delivered(room: stamped.room, origin: stamped.origin, frame: String(buffer: stamped.engineFrame)))
    }
}

/// A session as the store sees one: counts the times it was told it was taken over.
final class RecordingSession: RecoverableSession, @unchecked Sendable { // used on one embedded loop only
    private(set) var takenOver = 0
    func sessionTakenOver() { takenOver += 1 }
}

/// One node of an in-memory three-node mesh, like `TestNode`, with recovery on (a store on its
/// loop, a fixed epoch) or off (a plain `RecordingDelivery`).
final class RecoveryTestNode: InMemoryMeshNode {
    static let config = ClusterConfig.threeTestNodes

    let name: String
    let loop = EmbeddedEventLoop()
    let mesh: MeshFanout
    let store: RecoveryStore?
    let stamping: StampingDelivery?
    let plain: RecordingDelivery?

    init(_ name: String, epoch: UInt64, recovery: Bool = true) {
        self.name = name
        mesh = MeshFanout(config: Self.config, localNode: Self.config.node(named: name)!, eventLoop: loop,
                          logger: Logger(label: "mesh-test", factory: { _ in SwiftLogNoOpLogHandler() }), epoch: epoch)
        if recovery {
            let store = RecoveryStore(policy: RecoveryPolicy(), eventLoop: loop, localNode: name, epoch: epoch,
                                      metrics: RecoveryMetrics(), wallClock: { 1_000_000 })
            self.store = store
            stamping = StampingDelivery(store: store)
            plain = nil
            mesh.start(delivery: stamping!)
        } else {
            store = nil
            stamping = nil
            plain = RecordingDelivery()
            mesh.start(delivery: plain!)
        }
    }

    deinit { store?.shutdown() }

    var origin: UInt32 { MessageOrigin.originID(epoch: mesh.epoch) }
    var delivered: [StampingDelivery.Delivered] { stamping?.delivered ?? [] }
}

/// Recovery nodes and the links between them; `RecoveryTestMesh.connected(_:)` links every pair,
/// `RecoveryTestMesh(_:)` none, for tests that link by hand.
typealias RecoveryTestMesh = InMemoryMesh<RecoveryTestNode>

/// The offset a stamped frame ends with: `…,"<offset>"]`.
func offset(of frame: String) -> String? {
    guard frame.hasSuffix("\"]"), let open = frame.dropLast(2).lastIndex(of: "\"") else { return nil }
    return String(frame[frame.index(after: open)..<frame.index(frame.endIndex, offsetBy: -2)])
}
