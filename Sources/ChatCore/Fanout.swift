/// The seam between a node's rooms and the other nodes: the broker-free mesh, Redis pub/sub,
/// or (for a single node) nothing at all. ChatCore never knows which one runs.
///
/// `subscribe` / `unsubscribe` are called when a room gains its first / loses its last local
/// member; `publish` hands over a message from a local client. Every implementation delivers
/// published messages to local members too (directly, or via the broker's echo), through
/// `FanoutDelivery`, keeping each publisher's order. Calls must not block: implementations
/// hop to their own event loop. `subscribe` / `unsubscribe` are called while the hub holds its
/// member-count lock (so they arrive in the order rooms gain and lose members): they must not
/// call back into `RoomHub`.
public protocol Fanout: AnyObject, Sendable {
    func start(delivery: any FanoutDelivery)
    func subscribe(room: String)
    func unsubscribe(room: String)
    func publish(_ message: ChatMessage)
}

/// Where a fanout hands messages for local members.
public protocol FanoutDelivery: AnyObject, Sendable {
    func deliverLocally(_ broadcast: ChatBroadcast)
}
