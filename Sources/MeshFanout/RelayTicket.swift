/// What the cancel closure of a relayed GET/POST needs to find it: the link and id it was sent
/// with (set once it was, on the mesh loop).
// @unchecked: written and read on the mesh loop only (send and cancel both queue there, in that order).
final class RelayTicket: @unchecked Sendable {
    var link: MeshRelayLink?
    var id: UInt64 = 0
}
