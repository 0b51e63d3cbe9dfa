import NIOCore

/// A client's Engine.IO request as the relay hands it to the owner: the polling GET or POST
/// (or the WebSocket that opens a relayed stream) for `sid`, with what the owner needs to
/// judge it as if the client had come to it directly.
public struct RelayedRequest: Sendable, Equatable {
    public var kind: RelayKind
    public var sid: String
    /// The client's Origin header, nil when it sent none (the owner runs its Origin check).
    public var origin: String?
    /// A POST's payload as the client sent it (empty for GET and WebSocket).
    public var body: ByteBuffer

    public init(kind: RelayKind, sid: String, origin: String?, body: ByteBuffer) {
        self.kind = kind
        self.sid = sid
        self.origin = origin
        self.body = body
    }
}
