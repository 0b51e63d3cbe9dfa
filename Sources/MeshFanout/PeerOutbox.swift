import NIOCore

/// The PUBs sent (or to be sent) to one peer that it has not acknowledged yet, in order.
///
/// They are kept so that a link that dies with frames still in a socket buffer loses nothing:
/// after reconnect the peer says what it got and the rest is sent again. The outbox is bounded
/// by count (always) and by age (while the link is down); what falls out is counted as dropped,
/// which is the only way a message can be lost between two live nodes.
public struct PeerOutbox: Sendable {
    public struct Entry: Sendable {
        public var sequence: UInt64
        public var frame: ByteBuffer
        public var enqueuedAt: UInt64
        /// Written to a link at least once: if it falls out unacknowledged, the peer may or
        /// may not have it. Entries never written are certainly lost when they fall out.
        public var written: Bool
    }

    /// What fell out of the outbox: never sent (lost) and sent but unconfirmed.
    public struct Dropped: Equatable, Sendable {
        public var unsent = 0
        public var unconfirmed = 0
        public var total: Int { unsent + unconfirmed }

        mutating func count(_ entry: Entry) {
            if entry.written { unconfirmed += 1 } else { unsent += 1 }
        }
    }

    public private(set) var maxMessages: Int
    public private(set) var entries = CircularBuffer<Entry>()
    /// The sequence the next PUB to this peer gets; sequences start at 1 in each process.
    public private(set) var nextSequence: UInt64 = 1

    public init(maxMessages: Int) {
        self.maxMessages = max(1, maxMessages)
    }

    public var count: Int { entries.count }

    public mutating func takeSequence() -> UInt64 {
        defer { nextSequence += 1 }
        return nextSequence
    }

    /// Appends a PUB; returns what fell out to keep the bound.
    public mutating func append(sequence: UInt64, frame: ByteBuffer, now: UInt64, written: Bool) -> Dropped {
        entries.append(Entry(sequence: sequence, frame: frame, enqueuedAt: now, written: written))
        var dropped = Dropped()
        while entries.count > maxMessages {
            dropped.count(entries.removeFirst())
        }
        return dropped
    }

    /// A reload changed `[mesh] buffer_messages`: the bound holds from now, so a smaller one
    /// drops the oldest entries at once. Returns what fell out.
    public mutating func setMaxMessages(_ newValue: Int) -> Dropped {
        maxMessages = max(1, newValue)
        var dropped = Dropped()
        while entries.count > maxMessages {
            dropped.count(entries.removeFirst())
        }
        return dropped
    }

    /// The peer's AUTH says it has every PUB of this process up to `sequence`: forget those.
    /// Numbering goes on above it even when this outbox never reached it: a peer that a reload
    /// removed and added back gets a fresh outbox here, while the peer still remembers this
    /// process's numbers, and would take PUBs numbered again from 1 as duplicates.
    public mutating func resume(peerHas sequence: UInt64) {
        acknowledge(upTo: sequence)
        if sequence >= nextSequence { nextSequence = sequence &+ 1 }
    }

    /// Marks every entry as written (after a resend on a new link).
    public mutating func markAllWritten() {
        for index in entries.indices { entries[index].written = true }
    }

    /// Forgets everything up to and including `sequence`.
    public mutating func acknowledge(upTo sequence: UInt64) {
        while let first = entries.first, first.sequence <= sequence {
            entries.removeFirst()
        }
    }

    /// Drops entries queued before `deadline`.
    public mutating func expire(olderThan deadline: UInt64) -> Dropped {
        var dropped = Dropped()
        while let first = entries.first, first.enqueuedAt < deadline {
            dropped.count(entries.removeFirst())
        }
        return dropped
    }

    /// The peer restarted (new epoch): what was queued was for members that are gone, and its
    /// numbering of our PUBs starts afresh, so ours does too. Returns how many were dropped.
    public mutating func restart() -> Int {
        defer {
            entries.removeAll()
            nextSequence = 1
        }
        return entries.count
    }
}

/// What one peer sent us: its process epoch and the last PUB sequence delivered from it, so a
/// PUB resent after a reconnect is delivered once.
public struct InboundSequence: Sendable, Equatable {
    public private(set) var epoch: UInt64 = 0
    public private(set) var lastSequence: UInt64 = 0

    public init() {}

    /// A link to the peer came up; a new epoch means a restarted peer, whose numbering restarts.
    public mutating func peerConnected(epoch newEpoch: UInt64) {
        if newEpoch != epoch {
            epoch = newEpoch
            lastSequence = 0
        }
    }

    public enum Verdict: Equatable, Sendable {
        case deliver(gap: UInt64)
        case duplicate
    }

    /// Sequences only grow; one at or below the last is a resend we already delivered. A gap
    /// means the peer dropped PUBs past its buffer bound.
    public mutating func accept(_ sequence: UInt64) -> Verdict {
        guard sequence > lastSequence else { return .duplicate }
        let gap = sequence - lastSequence - 1
        lastSequence = sequence
        return .deliver(gap: gap)
    }
}
