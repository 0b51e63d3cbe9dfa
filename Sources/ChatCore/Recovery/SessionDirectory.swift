/// Every session record this node knows, local and replicated, and the rule that decides
/// between two copies of one. Confined to the store's loop.
///
/// The rule orders all copies of a record the same way on every node, so that every node ends
/// with the same one whatever order the copies arrive in: more claims win (a recovery outranks
/// every change the previous owner made, an end included); between equal claims by different
/// owners the lower node name wins (two nodes recovered it at once); under one owner more
/// changes win; for an equal version the owner's own word wins. An ended copy therefore stays
/// ended against every late copy of what came before it (tombstones are kept for
/// `max_disconnection` for this), and only a newer claim can replace it.
final class SessionDirectory {
    private(set) var records: [String: SessionRecord] = [:]
    /// Tombstones that ended by expiry here, so a late recovery is told `expired`.
    private(set) var expiredPids: Set<String> = []
    /// `cost(of:)` summed over `records`.
    private(set) var recordBytes = 0

    subscript(pid: String) -> SessionRecord? { records[pid] }

    var count: Int { records.count }

    /// Records in the held state, kept up to date by `put` and `remove`.
    private(set) var heldCount = 0

    func put(_ record: SessionRecord) {
        if let old = records.updateValue(record, forKey: record.pid) { forget(old) }
        recordBytes += Self.cost(of: record)
        if record.isHeld { heldCount += 1 }
    }

    private func forget(_ old: SessionRecord) {
        recordBytes -= Self.cost(of: old)
        if old.isHeld { heldCount -= 1 }
    }

    func markExpired(_ pid: String) {
        expiredPids.insert(pid)
    }

    func remove(_ pid: String) {
        if let old = records.removeValue(forKey: pid) { forget(old) }
        expiredPids.remove(pid)
    }

    /// Takes `incoming` if it outranks the copy held; returns whether it did.
    func merge(_ incoming: SessionRecord, fromOwner: Bool) -> Bool {
        if let existing = records[incoming.pid], !Self.prefers(incoming, over: existing, fromOwner: fromOwner) {
            return false
        }
        put(incoming)
        return true
    }

    static func prefers(_ incoming: SessionRecord, over existing: SessionRecord, fromOwner: Bool) -> Bool {
        if incoming.claims != existing.claims { return incoming.claims > existing.claims }
        if incoming.owner != existing.owner { return incoming.owner < existing.owner }
        if incoming.version != existing.version { return incoming.version > existing.version }
        return fromOwner && incoming != existing
    }

    /// A rough size of one record in memory, for the bytes-held gauge.
    static func cost(of record: SessionRecord) -> Int {
        160 + record.pid.utf8.count + record.sid.utf8.count + record.room.utf8.count
            + (record.username?.utf8.count ?? 0) + record.owner.utf8.count + record.start.sequences.count * 24
    }
}
