/// What a node sends at link-up to tell a peer its rooms: one SNAPSHOT, which replaces the
/// peer's table of this node's rooms, then a SUB for each room the SNAPSHOT had no room for.
/// Every frame fits under `max_frame` (peers share cluster.conf's), so a large room table
/// no longer makes a frame the peer must refuse: that refusal dropped the link, and the redial
/// sent the same frame again, forever (docs/SCALE.md, "What broke").
struct InterestAnnouncement {
    /// SNAPSHOT first (it may be empty), then the SUBs.
    private(set) var frames: [MeshFrame] = []
    /// Rooms whose id alone makes a SUB over `max_frame` (not possible with a valid
    /// cluster.conf, whose max_frame exceeds max_payload): left out, the caller says so.
    private(set) var unsendable: [String] = []

    /// A frame body's type byte.
    static let typeLength = 1
    /// SNAPSHOT's room count.
    static let countLength = 4
    /// Each room id's length prefix.
    static let stringPrefixLength = 2

    init(rooms: some Sequence<String>, maxFrame: Int) {
        var snapshot: [String] = []
        var snapshotLength = Self.typeLength + Self.countLength
        var subs: [MeshFrame] = []
        for room in rooms {
            let entry = Self.stringPrefixLength + room.utf8.count
            if snapshotLength + entry <= maxFrame {
                snapshot.append(room)
                snapshotLength += entry
            } else if Self.typeLength + entry <= maxFrame {
                subs.append(.sub(room))
            } else {
                unsendable.append(room)
            }
        }
        frames = [.snapshot(snapshot)] + subs
    }
}
