/// The relay state of one authenticated link: what this node relayed over it (`outbound`) and
/// what the peer relayed to this node over it (`inbound`). Made when the link comes up; when it
/// goes down (or is replaced) everything in both tables is failed at once and `isOpen` turns
/// false, so a late reply or frame for it, arriving from another thread, goes nowhere.
// @unchecked: touched only on the mesh loop; handles and replies from other threads hop there first.
final class MeshRelayLink: @unchecked Sendable {
    let peer: String
    private weak var handler: PeerLinkHandler?
    var isOpen = true
    var outbound: RelayRequestTable
    var inbound: RelayOwnerTable

    /// `weDialed`: this node dialed the link, so its ids are odd and the peer's even.
    init(peer: String, handler: PeerLinkHandler, weDialed: Bool) {
        self.peer = peer
        self.handler = handler
        outbound = RelayRequestTable(oddIDs: weDialed)
        inbound = RelayOwnerTable(peerOddIDs: !weDialed)
    }

    /// Writes `frame` on the link, flushed at the end of the loop's tick; nothing once closed.
    func send(_ frame: MeshFrame) {
        guard isOpen else { return }
        handler?.send(frame, flush: false)
    }
}
