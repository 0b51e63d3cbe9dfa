import EngineIO
import Foundation
import NIOCore

/// A node's memory for connection-state recovery (docs/RECOVERY.md): every room's recent
/// messages with their vectors and floors, every known session record, which sessions are
/// live here, and the timer that expires held sessions. Everything happens on `eventLoop`
/// (the fanout's delivery loop): the hub stamps every broadcast here, the engine hops here to
/// open, hold, end and recover sessions, the mesh hops here with peers' records.
public final class RecoveryStore: @unchecked Sendable { // every member is touched only on eventLoop (checked by preconditions)
    public let eventLoop: any EventLoop
    public let localOrigin: UInt32
    public let localNode: String
    public let epoch: UInt64
    /// `[recovery]`'s bounds; a reload replaces them (`apply(policy:)`).
    public private(set) var policy: RecoveryPolicy
    public let metrics: RecoveryMetrics
    /// Set by the mesh when it starts; nil on a single node and with Redis.
    public weak var replication: (any SessionReplication)?
    /// Publishes what the store announces for a session it settles (the hub's publish): the
    /// quit of a session that ended or expired here, and a join when a recovery elsewhere
    /// overrides such an end after its quit went out.
    public var publishChat: ((ChatMessage) -> Void)?
    /// Ended sessions whose quit this node published, while their tombstone lasts: if another
    /// node's recovery of one wins after all, the room hears the session come back.
    private var quitAnnouncedHere: Set<String> = []

    private let wallClock: @Sendable () -> Int64
    /// Wall time this store was made: a session held since before it may have missed messages
    /// this node never saw.
    public let createdMillis: Int64

    private var logs: [String: RoomLog] = [:]
    /// The next local sequence per room, and when it was last used.
    private var localSequences: [String: (sequence: UInt64, used: NIODeadline)] = [:]
    /// Every kept entry in stamp order across rooms: (room log, serial). Entries a room evicted
    /// itself stay here until they reach the front or a compaction.
    private var stampOrder: [(log: RoomLog, serial: UInt64)] = []
    private var stampOrderHead = 0
    private var nextSerial: UInt64 = 0
    private var keptEntries = 0
    private var keptBytes = 0

    private let directory = SessionDirectory()
    /// Sessions connected to this node, by pid.
    /// Weak: a connection that went away without a word (a bug elsewhere) is noticed by the
    /// sweep, which holds its session, instead of being kept alive here.
    private var attached: [String: WeakSession] = [:]

    private struct WeakSession {
        weak var session: (any RecoverableSession)?
    }
    private var sweepTask: RepeatedTask?

    /// How often expiry, tombstones, age eviction and silent origins are looked at (a tenth of
    /// `max_disconnection`, 10 ms to 1 s).
    public private(set) var sweepInterval: TimeAmount
    /// How often a recovery waiting to catch up looks again.
    public static let catchUpRetry: TimeAmount = .milliseconds(20)

    public init(policy: RecoveryPolicy, eventLoop: any EventLoop, localNode: String, epoch: UInt64,
                metrics: RecoveryMetrics,
                wallClock: @escaping @Sendable () -> Int64 = { Int64((Date().timeIntervalSince1970 * 1000).rounded(.down)) }) {
        self.policy = policy
        self.eventLoop = eventLoop
        self.localNode = localNode
        self.epoch = epoch
        self.localOrigin = MessageOrigin.originID(epoch: epoch)
        self.metrics = metrics
        self.wallClock = wallClock
        self.createdMillis = wallClock()
        self.sweepInterval = Self.sweepInterval(for: policy)
        startSweeping()
    }

    private static func sweepInterval(for policy: RecoveryPolicy) -> TimeAmount {
        let tenth = policy.maxDisconnection.nanoseconds / 10
        return .nanoseconds(min(1_000_000_000, max(10_000_000, tenth)))
    }

    private func startSweeping() {
        sweepTask = eventLoop.scheduleRepeatedTask(initialDelay: sweepInterval, delay: sweepInterval) { [weak self] task in
            guard let self else { return task.cancel() }
            self.sweep()
        }
    }

    /// Takes new bounds (a reload of `[recovery]`), on `eventLoop`. Smaller message bounds evict
    /// at once what they no longer cover; a shorter `max_disconnection` expires, at the next
    /// sweep, held sessions and tombstones now older than it (the sweep interval follows it).
    /// A running store never forgets an origin sooner than it would have: `originSilence` only
    /// grows here, since peers and recovering clients may still name an origin under the old,
    /// longer bound.
    public func apply(policy newPolicy: RecoveryPolicy) {
        eventLoop.preconditionInEventLoop()
        var policy = newPolicy
        policy.originSilence = max(newPolicy.originSilence, self.policy.originSilence)
        self.policy = policy
        let interval = Self.sweepInterval(for: policy)
        if interval != sweepInterval, sweepTask != nil {
            sweepInterval = interval
            sweepTask?.cancel()
            startSweeping()
        }
        let now = eventLoop.now
        for log in logs.values {
            while log.count > policy.roomMessages { evictFirst(of: log) }
        }
        while keptBytes > policy.historyBytes, evictGloballyOldest() {}
        evictAged(now: now)
        updateGauges()
    }

    /// Stops the expiry timer (the node is shutting down).
    public func shutdown() {
        sweepTask?.cancel()
        sweepTask = nil
    }

    deinit {
        sweepTask?.cancel()
    }

    private var maxDisconnectionMillis: Int64 { policy.maxDisconnection.nanoseconds / 1_000_000 }

    // MARK: messages

    /// The next sequence of this process in `room`: called where the node's own publishes are
    /// ordered (the fanout's loop), before the broadcast is delivered or forwarded.
    public func originate(room: String) -> MessageOrigin {
        eventLoop.preconditionInEventLoop()
        let next = (localSequences[room]?.sequence ?? 0) + 1
        localSequences[room] = (next, eventLoop.now)
        return MessageOrigin(origin: localOrigin, sequence: next)
    }

    /// Logs a broadcast about to be delivered here and returns it with its offset (the room's
    /// vector just after it). A broadcast without an origin is this node's own.
    public func stamp(_ broadcast: ChatBroadcast, arrivedAt: NIODeadline) -> ChatBroadcast {
        eventLoop.preconditionInEventLoop()
        let origin = broadcast.origin ?? originate(room: broadcast.room)
        let log = roomLog(broadcast.room)
        guard log.accept(origin: origin.origin, sequence: origin.sequence, at: arrivedAt) else {
            // A resent duplicate: delivered as before, but kept once.
            var same = broadcast.withOffset(log.vectorString)
            same.origin = origin
            return same
        }
        var stamped = broadcast.withOffset(log.vectorString)
        stamped.origin = origin
        nextSerial += 1
        let entry = RoomLog.Entry(origin: origin.origin, sequence: origin.sequence, frame: stamped.engineFrame,
                                  arrivedAt: arrivedAt, serial: nextSerial)
        log.append(entry)
        stampOrder.append((log, nextSerial))
        keptEntries += 1
        keptBytes += RoomLog.cost(of: entry)
        enforceBounds(of: log, now: arrivedAt)
        return stamped
    }

    /// A link lost messages: recovery in `room` (every room, nil) cannot vouch for what comes
    /// after the last message from `origin` until its next one arrives.
    public func noteGap(origin: UInt32, room: String?) {
        eventLoop.preconditionInEventLoop()
        if let room {
            logs[room]?.noteGap(origin: origin)
        } else {
            for log in logs.values { log.noteGap(origin: origin) }
        }
    }

    /// The room's vector here (empty for a room never heard of).
    public func vector(of room: String) -> RecoveryOffset {
        eventLoop.preconditionInEventLoop()
        return logs[room]?.vector ?? RecoveryOffset()
    }

    private func roomLog(_ room: String) -> RoomLog {
        if let log = logs[room] { return log }
        let log = RoomLog(room: room)
        logs[room] = log
        return log
    }

    private func evictFirst(of log: RoomLog) {
        guard let entry = log.evictFirst() else { return }
        keptEntries -= 1
        keptBytes -= RoomLog.cost(of: entry)
    }

    /// The room's own bounds (count, age), then the node's byte bound, oldest first.
    private func enforceBounds(of log: RoomLog, now: NIODeadline) {
        while log.count > policy.roomMessages { evictFirst(of: log) }
        while let arrived = log.firstArrivedAt, arrived + policy.maxDisconnection < now { evictFirst(of: log) }
        while keptBytes > policy.historyBytes, evictGloballyOldest() {}
        compactStampOrderIfStale()
    }

    /// Evicts the oldest entry still kept in any room; false when nothing is kept.
    private func evictGloballyOldest() -> Bool {
        while stampOrderHead < stampOrder.count {
            let (log, serial) = stampOrder[stampOrderHead]
            stampOrderHead += 1
            if log.firstSerial == serial {
                evictFirst(of: log)
                return true
            }
        }
        return false
    }

    /// Evicts, in every room, entries older than `max_disconnection`.
    private func evictAged(now: NIODeadline) {
        while stampOrderHead < stampOrder.count {
            let (log, serial) = stampOrder[stampOrderHead]
            if log.firstSerial == serial, let arrived = log.firstArrivedAt {
                guard arrived + policy.maxDisconnection < now else { break }
                evictFirst(of: log)
            }
            stampOrderHead += 1
        }
        compactStampOrderIfStale()
    }

    /// Keeps `stampOrder` within a constant factor of what is kept: entries a room evicted on
    /// its own (room_messages) stay listed behind an old entry of a quiet room until then.
    private func compactStampOrderIfStale() {
        let listed = stampOrder.count - stampOrderHead
        if listed > 2 * keptEntries + 1024 {
            stampOrder = stampOrder[stampOrderHead...].filter { listedEntry in
                guard let first = listedEntry.log.firstSerial else { return false }
                return first <= listedEntry.serial
            }
            stampOrderHead = 0
        } else if stampOrderHead > 1024, stampOrderHead * 2 >= stampOrder.count {
            stampOrder.removeFirst(stampOrderHead)
            stampOrderHead = 0
        }
    }

    /// Entries listed in stamp order, evicted ones included (for tests of the compaction).
    var stampOrderLength: Int { stampOrder.count - stampOrderHead }

    // MARK: sessions

    /// A new recoverable session in `room`, live here.
    public func open(room: String, session: any RecoverableSession) -> SessionRecord {
        eventLoop.preconditionInEventLoop()
        let record = SessionRecord(pid: SessionID.make(), sid: SessionID.make(), room: room, owner: localNode,
                                   ownerEpoch: epoch, version: 1, state: .live, start: logs[room]?.vector ?? RecoveryOffset())
        directory.put(record)
        attached[record.pid] = WeakSession(session: session)
        changed(record)
        return record
    }

    /// The session joined its room as `username`.
    public func joined(pid: String, username: String) {
        update(pid, by: nil, leaving: false) { record in
            guard !record.isEnded else { return false }
            record.username = username
            return true
        }
    }

    /// The session lost its connection without saying goodbye: held from now, its quit
    /// published when `max_disconnection` passes unless it is recovered first. With `session`,
    /// only if that connection still has the session (one that was taken over changes nothing).
    public func detached(pid: String, session: (any RecoverableSession)? = nil) {
        let now = wallClock()
        update(pid, by: session, leaving: true) { record in
            guard record.state == .live else { return false }
            record.state = .held(sinceMillis: now)
            return true
        }
    }

    /// The client disconnected on purpose: the session is over and, if it had joined, its quit
    /// is published here. With `session`, only if that connection still has the session: one
    /// that was taken over (a recovery, here or elsewhere, reached the store first) ends
    /// nothing and announces nothing, so the room never hears a quit for a session that lives on.
    public func ended(pid: String, session: (any RecoverableSession)? = nil) {
        let now = wallClock()
        let ended = update(pid, by: session, leaving: true) { record in
            guard !record.isEnded else { return false }
            record.state = .ended(atMillis: now)
            return true
        }
        if let ended { announceQuit(of: ended) }
    }

    /// Publishes the quit of a session that ended here and remembers that it did.
    private func announceQuit(of record: SessionRecord) {
        guard let username = record.username else { return }
        quitAnnouncedHere.insert(record.pid)
        publishChat?(.quit(room: record.room, username: username))
    }

    /// A change by the connection that has the session here. A session this node no longer
    /// owns (recovered elsewhere) or that another connection here took over is not changed.
    /// `leaving`: the connection is gone, so it no longer has the session here.
    /// Returns the changed record, nil when nothing changed.
    @discardableResult
    private func update(_ pid: String, by session: (any RecoverableSession)?, leaving: Bool,
                        _ change: (inout SessionRecord) -> Bool) -> SessionRecord? {
        eventLoop.preconditionInEventLoop()
        if let session {
            guard attached[pid]?.session === session else { return nil }
        }
        if leaving { attached[pid] = nil }
        guard var record = directory[pid], record.owner == localNode, record.ownerEpoch == epoch, change(&record) else { return nil }
        record.noteChange()
        directory.put(record)
        changed(record)
        return record
    }

    /// Replicates a record this node changed and refreshes the gauges.
    private func changed(_ record: SessionRecord) {
        replication?.replicate(record)
        updateGauges()
    }

    // MARK: recovery

    /// Tries to restore session `pid` in `room` for a client whose last offset is `offset`.
    /// `completion` runs on this loop, in the task that read the history.
    public func recover(pid: String, offset: String?, room: String, session: any RecoverableSession,
                        completion: @escaping (RecoveryOutcome) -> Void) {
        eventLoop.preconditionInEventLoop()
        metrics.countAttempt()
        let parsed: RecoveryOffset
        if let offset {
            guard let valid = RecoveryOffset(parsing: offset) else {
                return finish(.failed(.badOffset), completion)
            }
            parsed = valid
        } else {
            parsed = RecoveryOffset()
        }
        attemptRecovery(pid: pid, offset: parsed, room: room, session: session,
                        catchUpDeadline: eventLoop.now + policy.catchUp, completion: completion)
    }

    private func attemptRecovery(pid: String, offset: RecoveryOffset, room: String, session: any RecoverableSession,
                                 catchUpDeadline: NIODeadline, completion: @escaping (RecoveryOutcome) -> Void) {
        var record: SessionRecord
        switch recoverableRecord(pid: pid, room: room) {
        case .failed(let reason): return finish(.failed(reason), completion)
        case .found(let found): record = found
        }
        var missed: [ByteBuffer] = []
        if record.username != nil, offset[localOrigin] > (logs[room]?.last(of: localOrigin) ?? 0) {
            // No node can have given the client more of this process's messages than it sent:
            // the offset is forged or from another room.
            return finish(.failed(.badOffset), completion)
        }
        if record.username != nil, let log = logs[room] {
            if isBehind(offset, in: log), eventLoop.now < catchUpDeadline {
                let boundCompletion = NIOLoopBound(completion, eventLoop: eventLoop)
                eventLoop.scheduleTask(in: Self.catchUpRetry) {
                    self.attemptRecovery(pid: pid, offset: offset, room: room, session: session,
                                         catchUpDeadline: catchUpDeadline, completion: boundCompletion.value)
                }
                return
            }
            let start = record.start
            let needed = { (origin: UInt32) in max(offset[origin], start[origin]) }
            if log.originMissingHistory(needed: needed) != nil {
                return finish(.failed(.offsetTooOld), completion)
            }
            missed = log.frames(after: needed)
        }
        if record.state == .live {
            // One session, never two: the connection that had it is closed without a quit
            // (here now; elsewhere when the claim reaches its node).
            if let previous = attached[pid]?.session, previous !== session {
                previous.sessionTakenOver()
            }
            metrics.countTakeover()
        }
        record.claim(by: localNode, epoch: epoch)
        directory.put(record)
        attached[pid] = WeakSession(session: session)
        changed(record)
        finish(.recovered(record, missed: missed, snapshotAt: NIODeadline.now()), completion)
    }

    /// The record of `pid` if it can be recovered in `room` (history aside).
    private func recoverableRecord(pid: String, room: String) -> RecordLookup {
        guard let record = directory[pid] else { return .failed(.unknownPid) }
        guard record.room == room else { return .failed(.wrongRoom) }
        switch record.state {
        case .ended:
            return .failed(directory.expiredPids.contains(pid) ? .expired : .ended)
        case .held(let since):
            if wallClock() - since >= maxDisconnectionMillis { return .failed(.expired) }
            if since < createdMillis { return .failed(.historyIncomplete) }
        case .live:
            // Live in this node's previous process: it died at some time before this one began.
            if record.owner == localNode && record.ownerEpoch != epoch { return .failed(.historyIncomplete) }
        }
        return .found(record)
    }

    private enum RecordLookup {
        case found(SessionRecord)
        case failed(RecoveryFailure)
    }

    /// Whether the client has had messages this node has not received yet from a peer whose
    /// link is up, so they may still come.
    private func isBehind(_ offset: RecoveryOffset, in log: RoomLog) -> Bool {
        guard let live = replication?.liveOrigins, !live.isEmpty else { return false }
        return offset.sequences.contains { origin, sequence in
            sequence > log.last(of: origin) && live.contains(origin)
        }
    }

    private func finish(_ outcome: RecoveryOutcome, _ completion: (RecoveryOutcome) -> Void) {
        switch outcome {
        case .recovered: metrics.countSuccess()
        case .failed(let reason): metrics.countFailure(reason)
        }
        completion(outcome)
    }

    // MARK: replication

    /// A peer's copy of a record; `fromOwner` when the peer is the record's owner.
    public func merge(_ record: SessionRecord, fromOwner: Bool) {
        eventLoop.preconditionInEventLoop()
        if case .ended(let at) = record.state, directory[record.pid] == nil,
           wallClock() - at >= maxDisconnectionMillis {
            return // a tombstone past its time: nothing to protect any more
        }
        let before = directory[record.pid]
        guard directory.merge(record, fromOwner: fromOwner) else { return }
        if let before, before.isEnded, !record.isEnded, quitAnnouncedHere.remove(record.pid) != nil,
           let username = record.username ?? before.username {
            // This node announced the end, and a recovery elsewhere won after all: the room
            // hears the session come back (quit, then join) rather than a say from nobody.
            publishChat?(.join(room: record.room, username: username))
        }
        let ownedHere = record.owner == localNode && record.ownerEpoch == epoch
        if let local = attached[record.pid]?.session, !ownedHere || record.isEnded {
            // Recovered elsewhere (or ended there): this connection is no longer the session.
            attached[record.pid] = nil
            local.sessionTakenOver()
        }
        updateGauges()
    }

    /// The link to `node` (the process of `epoch`) went down: its live sessions are held from
    /// now, on this node only (every node does the same).
    public func peerLost(node: String, epoch: UInt64) {
        eventLoop.preconditionInEventLoop()
        let now = wallClock()
        for record in directory.records.values
        where record.owner == node && record.ownerEpoch == epoch && record.state == .live {
            var held = record
            held.state = .held(sinceMillis: now)
            directory.put(held)
        }
        updateGauges()
    }

    /// Every record known here, tombstones included: what a peer gets when its link comes up.
    public var allRecords: [SessionRecord] {
        eventLoop.preconditionInEventLoop()
        return Array(directory.records.values)
    }

    /// The record of `pid`, if known here.
    public func record(pid: String) -> SessionRecord? {
        eventLoop.preconditionInEventLoop()
        return directory[pid]
    }

    // MARK: expiry

    /// Expires held sessions, forgets old tombstones, messages and silent origins.
    func sweep() {
        eventLoop.preconditionInEventLoop()
        let nowMillis = wallClock()
        let now = eventLoop.now
        markUnreachableSessionsHeld(nowMillis: nowMillis)
        for record in directory.records.values {
            switch record.state {
            case .held(let since) where nowMillis - since >= maxDisconnectionMillis:
                expire(record, nowMillis: nowMillis)
            case .ended(let at) where nowMillis - at >= maxDisconnectionMillis:
                directory.remove(record.pid)
                quitAnnouncedHere.remove(record.pid)
            default:
                break
            }
        }
        evictAged(now: now)
        let silentBefore = now - policy.originSilence
        for (room, log) in logs {
            _ = log.dropOrigins(silentSince: silentBefore)
            if log.isEmpty { logs[room] = nil }
        }
        // Twice as long as the vectors keep an origin, so no peer still holds this node's
        // last sequence in the room when it starts again at 1.
        let sequenceCutoff = now - policy.originSilence - policy.originSilence
        localSequences = localSequences.filter { $0.value.used >= sequenceCutoff }
        updateGauges()
    }

    /// Live records whose owner this node cannot reach (a peer it never had a link to, or this
    /// node's own previous process) are held, locally, like those of a lost peer. One of this
    /// process whose connection is gone without a word is held as an unexpected disconnect.
    private func markUnreachableSessionsHeld(nowMillis: Int64) {
        let liveNames = replication?.liveNodeNames
        let liveOrigins = replication?.liveOrigins
        for record in directory.records.values where record.state == .live {
            let since: Int64
            if record.owner == localNode {
                if record.ownerEpoch == epoch {
                    guard attached[record.pid]?.session == nil else { continue }
                    attached[record.pid] = nil
                    var held = record
                    held.state = .held(sinceMillis: nowMillis)
                    held.noteChange()
                    directory.put(held)
                    replication?.replicate(held)
                    continue
                }
                // That process died before this one began: held since before this store.
                since = createdMillis - 1
            } else {
                guard let liveNames, let liveOrigins else { continue }
                let reachable = liveNames.contains(record.owner)
                    && liveOrigins.contains(MessageOrigin.originID(epoch: record.ownerEpoch))
                guard !reachable else { continue }
                since = nowMillis
            }
            var held = record
            held.state = .held(sinceMillis: since)
            directory.put(held)
        }
    }

    /// A held session's time is up: the node responsible for it publishes its quit, ends it and
    /// replicates the end. The others only refuse to recover it (its time is checked) and keep
    /// it held until the end reaches them: should the responsible node die first, one of them
    /// becomes responsible and the quit is still published.
    private func expire(_ record: SessionRecord, nowMillis: Int64) {
        guard isResponsible(for: record) else { return }
        var ended = record
        ended.state = .ended(atMillis: nowMillis)
        directory.markExpired(record.pid)
        announceQuit(of: record)
        ended.noteChange()
        directory.put(ended)
        replication?.replicate(ended)
    }

    /// The owner is responsible; for an owner this node cannot reach, the first node after it,
    /// in name order, among this node and the peers it can reach.
    func isResponsible(for record: SessionRecord) -> Bool {
        if record.owner == localNode { return true }
        guard let replication else { return true }
        let live = replication.liveNodeNames
        if live.contains(record.owner) { return false }
        let candidates = (live.union([localNode])).sorted()
        let next = candidates.first { $0 > record.owner } ?? candidates.first
        return next == localNode
    }

    // MARK: stats

    /// Held sessions known to this node.
    public var heldSessions: Int {
        eventLoop.preconditionInEventLoop()
        return directory.heldCount
    }

    /// Bytes of kept messages plus an estimate for every record.
    public var bytesHeld: Int {
        eventLoop.preconditionInEventLoop()
        return keptBytes + directory.recordBytes
    }

    /// Messages kept, all rooms.
    public var messagesKept: Int {
        eventLoop.preconditionInEventLoop()
        return keptEntries
    }

    private func updateGauges() {
        metrics.recordHeld(sessions: directory.heldCount, bytes: bytesHeld)
    }
}
