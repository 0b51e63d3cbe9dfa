import ChatCore
import NIOCore

/// The owner side of one link: the GET/POSTs and streams the peer relayed to this node that
/// are not finished, by the peer's id. Caps them at `perLink` on the link and `perSession` per
/// session (docs/RELAY.md), and checks the peer's ids: each new request must have the peer's
/// parity and be above every id before it (the relay issues them in order, and the link keeps
/// it), so a reused id is refused as a protocol violation, and a frame for an id the peer never
/// opened is one too.
struct RelayOwnerTable {
    enum Entry {
        case exchange(RelayExchange, kind: RelayKind, sid: String)
        /// `sink` is nil only while the owner handler decides whether to take the stream.
        case stream(OwnedStreamHandle, sink: (any RelayStreamSink)?, sid: String)

        var sid: String {
            switch self {
            case .exchange(_, _, let sid), .stream(_, _, let sid): return sid
            }
        }
    }

    enum Admission: Equatable {
        case admitted
        /// Over `perLink` or `perSession`: refused, the link stays.
        case overCap
        /// Not the peer's parity, or not above its last id: the link is closed.
        case badID
    }

    static let perLink = 4096
    static let perSession = 4

    private(set) var entries: [UInt64: Entry] = [:]
    private var perSid: [String: Int] = [:]
    /// The peer's ids are odd (it dialed the link) or even.
    let peerOddIDs: Bool
    /// The highest id the peer opened, 0 before the first.
    private(set) var lastID: UInt64 = 0

    init(peerOddIDs: Bool) {
        self.peerOddIDs = peerOddIDs
    }

    /// Whether `id` has the peer's parity.
    func isPeers(_ id: UInt64) -> Bool {
        id != 0 && (id & 1 == 1) == peerOddIDs
    }

    /// Whether the peer opened `id` (whether or not it is still here).
    func wasOpened(_ id: UInt64) -> Bool {
        isPeers(id) && id <= lastID
    }

    /// Checks a new request's id and the caps; an admitted or refused id counts as opened.
    mutating func admit(id: UInt64, sid: String) -> Admission {
        guard isPeers(id), id > lastID else { return .badID }
        lastID = id
        guard entries.count < Self.perLink, perSid[sid, default: 0] < Self.perSession else { return .overCap }
        return .admitted
    }

    /// Keeps an admitted request.
    mutating func insert(_ id: UInt64, _ entry: Entry) {
        entries[id] = entry
        perSid[entry.sid, default: 0] += 1
    }

    /// Gives a stream kept while its handler decided its sink; false if it ended meanwhile.
    mutating func setSink(_ id: UInt64, _ sink: any RelayStreamSink) -> Bool {
        guard case .stream(let handle, _, let sid) = entries[id] else { return false }
        entries[id] = .stream(handle, sink: sink, sid: sid)
        return true
    }

    mutating func remove(_ id: UInt64) -> Entry? {
        guard let entry = entries.removeValue(forKey: id) else { return nil }
        let left = perSid[entry.sid, default: 1] - 1
        perSid[entry.sid] = left > 0 ? left : nil
        return entry
    }

    /// How many requests of `sid` are in flight (tests and the cap).
    func inFlight(sid: String) -> Int {
        perSid[sid, default: 0]
    }

    /// Everything in flight, oldest first, leaving the table empty.
    mutating func removeAll() -> [Entry] {
        let all = entries.sorted { $0.key < $1.key }.map(\.value)
        entries.removeAll()
        perSid.removeAll()
        return all
    }
}
