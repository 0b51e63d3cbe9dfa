import NIOCore

/// The relay side: the node that got a client's request for a session another node owns
/// (docs/RELAY.md). Implemented by `MeshFanout`; `Fanout.relay` returns it (nil for Redis and
/// a single node, which do not relay).
public protocol SessionRelay: AnyObject, Sendable {
    /// Whether the sid's tag names another node of the cluster (whatever its link state).
    func isPeerSession(sid: String) -> Bool
    /// Sends a GET/POST to the owner; `completion` runs exactly once, on any thread. The
    /// returned closure cancels (client went away): sends RELAY_CLOSE, completion is then not
    /// called.
    func send(_ request: RelayedRequest, completion: @escaping @Sendable (Result<RelayReply, RelayFailure>) -> Void)
        -> @Sendable () -> Void
    /// Opens a relayed WebSocket stream (RELAY_REQUEST kind 3) to the owner. Frames from the
    /// owner go to `onFrame` (kind .framed: write verbatim); `onClose(code)` runs once (owner
    /// closed; refused: 4404 no such session, 1013 over a cap; link down: 1011), and not after
    /// the stream's own `close`. Nil when the sid's tag names no peer with a live link (nothing
    /// was sent; neither closure will run).
    func openStream(sid: String, origin: String?, onFrame: @escaping @Sendable (RelayFrameKind, ByteBuffer) -> Void,
                    onClose: @escaping @Sendable (UInt16) -> Void) -> (any RelayStream)?
    /// Where requests relayed TO this node go; set once by the node before start.
    func setOwnerHandler(_ handler: any RelayOwnerHandler)
}
