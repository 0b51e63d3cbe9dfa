/// The store's view of the other nodes (implemented by the mesh). Every member is used on the
/// store's event loop.
public protocol SessionReplication: AnyObject, Sendable {
    /// Sends a changed record to every live peer.
    func replicate(_ record: SessionRecord)
    /// Peers with a live link.
    var liveNodeNames: Set<String> { get }
    /// `MessageOrigin.originID(epoch:)` of the peers with a live link.
    var liveOrigins: Set<UInt32> { get }
}
