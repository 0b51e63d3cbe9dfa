import ChatCore
import ClusterConfig
import Logging
import Metrics
import NIOConcurrencyHelpers
import NIOCore
import NIOEmbedded
@testable import MeshFanout

/// A metrics backend that keeps every counter's total and every timer's samples, by
/// `label{name=value,…}`, so tests read what a node counted.
final class RecordingMetricsFactory: MetricsFactory {
    final class Handler: CounterHandler, RecorderHandler, TimerHandler {
        let values = NIOLockedValueBox<[Int64]>([])
        func increment(by amount: Int64) { values.withLockedValue { $0.append(amount) } }
        func reset() { values.withLockedValue { $0 = [] } }
        func record(_ value: Int64) { values.withLockedValue { $0.append(value) } }
        func record(_ value: Double) { values.withLockedValue { $0.append(Int64(value)) } }
        func recordNanoseconds(_ duration: Int64) { values.withLockedValue { $0.append(duration) } }
    }

    private let handlers = NIOLockedValueBox<[String: Handler]>([:])

    static func key(_ label: String, _ dimensions: [(String, String)]) -> String {
        dimensions.isEmpty ? label : "\(label){\(dimensions.map { "\($0.0)=\($0.1)" }.joined(separator: ","))}"
    }

    private func handler(_ label: String, _ dimensions: [(String, String)]) -> Handler {
        handlers.withLockedValue { handlers in
            let key = Self.key(label, dimensions)
            if let handler = handlers[key] { return handler }
            let handler = Handler()
            handlers[key] = handler
            return handler
        }
    }

    func makeCounter(label: String, dimensions: [(String, String)]) -> any CounterHandler { handler(label, dimensions) }
    func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool) -> any RecorderHandler {
        handler(label, dimensions)
    }
    func makeTimer(label: String, dimensions: [(String, String)]) -> any TimerHandler { handler(label, dimensions) }
    func destroyCounter(_ handler: any CounterHandler) {}
    func destroyRecorder(_ handler: any RecorderHandler) {}
    func destroyTimer(_ handler: any TimerHandler) {}

    /// A counter's total (0 if never made).
    func total(_ key: String) -> Int64 {
        handlers.withLockedValue { $0[key] }?.values.withLockedValue { $0.reduce(0, +) } ?? 0
    }

    /// How many samples a timer got.
    func samples(_ key: String) -> Int {
        handlers.withLockedValue { $0[key] }?.values.withLockedValue { $0.count } ?? 0
    }

    /// `chatmesh_relay_requests_total` for one kind and result.
    func relayed(_ kind: String, _ result: String) -> Int64 {
        total("chatmesh_relay_requests_total{kind=\(kind),result=\(result)}")
    }

    var violations: Int64 { total("chatmesh_mesh_link_rejects_total{reason=relay_protocol}") }
}

/// One node of an in-memory three-node mesh for the relay, like `TestNode`: a real
/// `MeshFanout` on an `EmbeddedEventLoop`, with its relay metrics recorded and an owner side
/// that records what is relayed to it.
final class RelayTestNode: InMemoryMeshNode {
    static let config = ClusterConfig.threeTestNodes

    let name: String
    let loop = EmbeddedEventLoop()
    let mesh: MeshFanout
    let metrics = RecordingMetricsFactory()
    let owner = RecordingOwner()
    let delivery = RecordingDelivery()

    init(_ name: String, ownerHandler: Bool = true) {
        self.name = name
        mesh = MeshFanout(config: Self.config, localNode: Self.config.node(named: name)!, eventLoop: loop,
                          logger: Logger(label: "mesh-test", factory: { _ in SwiftLogNoOpLogHandler() }), epoch: nil,
                          relayMetrics: RelayMetrics(factory: metrics))
        mesh.start(delivery: delivery)
        if ownerHandler { mesh.setOwnerHandler(owner) }
    }

    /// A sid this node would make: its tag, then 16 characters.
    func sid(_ suffix: String = "0123456789abcdef") -> String {
        precondition(suffix.utf8.count == 16)
        return NodeTag.of(nodeName: name) + suffix
    }
}

/// Relay nodes with every pair linked (the smaller name dials) and settled before the test
/// starts, nothing of that setup left in `frames(_:_:)`.
final class RelayTestMesh: InMemoryMesh<RelayTestNode> {
    /// (A throwing init cannot override the base's plain one, hence the second parameter; with
    /// `false` the test links by hand.)
    init(_ nodes: [RelayTestNode], linkingEveryPair: Bool = true) throws {
        super.init(nodes)
        guard linkingEveryPair else { return }
        for (index, dialer) in nodes.enumerated() {
            for acceptor in nodes[(index + 1)...] { try addLink(dialer, acceptor) }
        }
        try settle()
        clearSeen()
    }

    /// A new link between two nodes already linked: it replaces the old one.
    func connectAgain(_ dialer: RelayTestNode, _ acceptor: RelayTestNode) throws {
        try connect(dialer, acceptor)
    }
}

/// The owner side as a test drives it: keeps every relayed request with its exchange (and what
/// ended it), and takes streams unless told to refuse them.
final class RecordingOwner: RelayOwnerHandler, @unchecked Sendable { // used on the test's embedded loops only
    struct Relayed {
        let request: RelayedRequest
        let peer: String
        let exchange: RelayExchange
        let ended: Box<RelayEnd?>
    }

    final class Box<Value>: @unchecked Sendable { // as above
        var value: Value
        init(_ value: Value) { self.value = value }
    }

    private(set) var relayed: [Relayed] = []
    private(set) var streams: [(sid: String, origin: String?, peer: String, stream: any RelayStream, sink: RecordingSink)] = []
    var refuseStreams = false

    func handleRelayed(_ request: RelayedRequest, from peer: String, exchange: RelayExchange) {
        let ended = Box<RelayEnd?>(nil)
        exchange.onEnd { why in ended.value = why }
        relayed.append(Relayed(request: request, peer: peer, exchange: exchange, ended: ended))
    }

    func openRelayedStream(sid: String, origin: String?, from peer: String, stream: any RelayStream) -> (any RelayStreamSink)? {
        guard !refuseStreams else { return nil }
        let sink = RecordingSink()
        streams.append((sid, origin, peer, stream, sink))
        return sink
    }
}

/// What the owner's end of a relayed stream received.
final class RecordingSink: RelayStreamSink, @unchecked Sendable { // used on the test's embedded loops only
    private(set) var received: [String] = []
    private(set) var ended: [RelayEnd] = []

    func received(_ kind: RelayFrameKind, _ payload: ByteBuffer) { received.append("\(kind) \(String(buffer: payload))") }
    func ended(_ why: RelayEnd) { ended.append(why) }
}

/// What the relay side got back for one GET/POST: its completions (there must be one at most).
final class RelayOutcome: @unchecked Sendable { // used on the test's embedded loops only
    private(set) var results: [Result<RelayReply, RelayFailure>] = []
    var completion: @Sendable (Result<RelayReply, RelayFailure>) -> Void { { self.results.append($0) } }

    var reply: RelayReply? {
        guard results.count == 1, case .success(let reply) = results[0] else { return nil }
        return reply
    }

    var failure: RelayFailure? {
        guard results.count == 1, case .failure(let failure) = results[0] else { return nil }
        return failure
    }
}

/// What the relay side got back on one stream.
final class StreamEvents: @unchecked Sendable { // used on the test's embedded loops only
    private(set) var frames: [String] = []
    private(set) var closes: [UInt16] = []
    var onFrame: @Sendable (RelayFrameKind, ByteBuffer) -> Void { { self.frames.append("\($0) \(String(buffer: $1))") } }
    var onClose: @Sendable (UInt16) -> Void { { self.closes.append($0) } }
}

func relayRequest(_ kind: RelayKind, _ sid: String, origin: String? = "https://chat.example", body: String = "") -> RelayedRequest {
    RelayedRequest(kind: kind, sid: sid, origin: origin, body: ByteBuffer(string: body))
}

func reply(_ status: UInt16 = 200, _ body: String) -> RelayReply {
    RelayReply(status: status, contentType: "text/plain; charset=UTF-8", body: ByteBuffer(string: body))
}
