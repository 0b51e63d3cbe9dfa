/// Why a relayed request got no answer from the owner. The relay answers its client
/// `400 Session ID unknown` for every one of them, at once, so the client reconnects.
public enum RelayFailure: Error, Sendable, Equatable {
    /// The sid's tag names no peer of the cluster, or one with no live link right now.
    case noOwner
    /// The owner's link went down while the request was in flight.
    case peerDown
    /// Over a cap of the relay (requests in flight on the link).
    case refused
}
