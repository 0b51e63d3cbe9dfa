import NIOCore

/// The seam between a node's rooms and the other nodes: the broker-free mesh, Redis pub/sub,
/// or (for a single node) nothing at all. ChatCore and the node never know which one runs.
///
/// Messaging: `subscribe` / `unsubscribe` are called when a room gains its first / loses its
/// last local member; `publish` hands over a message from a local client. Every implementation
/// delivers published messages to local members too (directly, or via the broker's echo),
/// through the `FanoutDelivery` given to `start(delivery:)`, keeping each publisher's order.
/// Calls must not block: implementations hop to their own event loop. `subscribe` /
/// `unsubscribe` are called while the hub holds its member-count lock (so they arrive in the
/// order rooms gain and lose members): they must not call back into `RoomHub`.
///
/// Lifecycle, driven by the node: `start(_:)` once the hub is wired, before the client
/// listener opens; on shutdown `drain(deadline:)`, then `stop()`. `health` may be read from
/// any thread at any time.
public protocol Fanout: AnyObject, Sendable {
    /// Where delivered messages go; the hub calls this once, when it is made.
    func start(delivery: any FanoutDelivery)
    func subscribe(room: String)
    func unsubscribe(room: String)
    func publish(_ message: ChatMessage)

    /// Brings the links to the other nodes up: listeners are bound (or adopted from systemd)
    /// before this returns, so a bind error is thrown; connections to peers or brokers are
    /// started and retried in the background.
    func start(_ context: FanoutStartContext) throws
    /// Completes when everything this node published has been acknowledged by whoever must
    /// carry it on (mesh peers, the Redis server), or at `deadline`, whichever comes first.
    /// Never fails.
    func drain(deadline: NIODeadline) -> EventLoopFuture<Void>
    /// Says goodbye to the other nodes and closes every link and listener. Never fails.
    func stop() -> EventLoopFuture<Void>
    /// Readiness and details for /healthz and systemd's STATUS=.
    var health: FanoutHealth { get }
    /// Relays a session's requests to the node that owns it (docs/RELAY.md): the mesh does;
    /// Redis and a single node do not (nil), so there every request must reach its owner.
    var relay: (any SessionRelay)? { get }
}

extension Fanout {
    /// No relay unless the fanout says otherwise (test fanouts need not).
    public var relay: (any SessionRelay)? { nil }
}

/// Where a fanout hands messages for local members.
public protocol FanoutDelivery: AnyObject, Sendable {
    /// With `recovery`, called on `recovery.eventLoop`: the broadcast is stamped there.
    func deliverLocally(_ broadcast: ChatBroadcast)
    /// Connection-state recovery's store, when it is on: the fanout orders the node's own
    /// publishes on its loop (`originate`) and delivers everything on it.
    var recovery: RecoveryStore? { get }
}

extension FanoutDelivery {
    public var recovery: RecoveryStore? { nil }
}
