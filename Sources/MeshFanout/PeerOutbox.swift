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
    }

    public let maxMessages: Int
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

    /// Appends a PUB; returns how many old ones fell out to keep the bound.
    public mutating func append(sequence: UInt64, frame: ByteBuffer, now: UInt64) -> Int {
        entries.append(Entry(sequence: sequence, frame: frame, enqueuedAt: now))
        var dropped = 0
        while entries.count > maxMessages {
            entries.removeFirst()
            dropped += 1
        }
        return dropped
    }

    /// Forgets everything up to and including `sequence`.
    public mutating func acknowledge(upTo sequence: UInt64) {
        while let first = entries.first, first.sequence <= sequence {
            entries.removeFirst()
        }
    }

    /// Drops entries queued before `deadline`; returns how many.
    public mutating func expire(olderThan deadline: UInt64) -> Int {
        var dropped = 0
        while let first = entries.first, first.enqueuedAt < deadline {
            entries.removeFirst()
            dropped += 1
        }
        return dropped
    }

    /// Drops everything (the peer restarted: what was queued was for members that are gone).
    public mutating func removeAll() -> Int {
        defer { entries.removeAll() }
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
