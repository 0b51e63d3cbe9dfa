import ChatCore
import NIOCore

/// The relay side of one link: the GET/POSTs and streams this node relayed over it whose end it
/// has not seen, by id (at most `capacity`).
///
/// Ids are issued in increasing order with the parity of this end of the link (the dialer's odd,
/// the acceptor's even), so any id in a frame says which side chose it. An id of ours that was
/// issued but is no longer here belongs to something that ended while the peer's frame about
/// it was on the way (a reply crossing our RELAY_CLOSE): such a frame is dropped. An id of ours
/// never issued is a lie, and closes the link.
struct RelayRequestTable {
    enum Entry {
        case request(kind: RelayKind, sent: NIODeadline, completion: @Sendable (Result<RelayReply, RelayFailure>) -> Void)
        case stream(RelayedStreamHandle)
    }

    static let capacity = 4096

    private(set) var entries: [UInt64: Entry] = [:]
    /// Ids this end issues are odd (the link's dialer) or even (its acceptor).
    let oddIDs: Bool
    /// The last id issued, 0 before the first.
    private(set) var lastIssued: UInt64 = 0

    init(oddIDs: Bool) {
        self.oddIDs = oddIDs
    }

    var isFull: Bool { entries.count >= Self.capacity }

    /// Keeps `entry` under a new id; nil when the table is full.
    mutating func add(_ entry: Entry) -> UInt64? {
        guard !isFull else { return nil }
        lastIssued = lastIssued == 0 ? (oddIDs ? 1 : 2) : lastIssued + 2
        entries[lastIssued] = entry
        return lastIssued
    }

    /// Whether `id` has this end's parity (as opposed to the peer's).
    func isOurs(_ id: UInt64) -> Bool {
        id != 0 && (id & 1 == 1) == oddIDs
    }

    /// Whether `id` is one of ours that was issued (pending or ended).
    func wasIssued(_ id: UInt64) -> Bool {
        isOurs(id) && id <= lastIssued
    }

    mutating func remove(_ id: UInt64) -> Entry? {
        entries.removeValue(forKey: id)
    }

    /// Everything pending, oldest first, leaving the table empty.
    mutating func removeAll() -> [Entry] {
        let all = entries.sorted { $0.key < $1.key }.map(\.value)
        entries.removeAll()
        return all
    }
}
