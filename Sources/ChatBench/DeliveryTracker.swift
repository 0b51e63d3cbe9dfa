/// What one receiver saw of one sender's numbered says (sequence 0, 1, 2, … in send order).
///
/// In-order arrival is the fast path (one compare, one increment). A jump forward records the
/// skipped numbers as one missing range; a number that later fills a missing range counts as
/// reordered, one seen before as duplicated. Whatever is still missing at the end is lost:
/// `lost(expected:)`. Memory is one entry per open gap, however long the gap.
public struct DeliveryTracker: Sendable, Equatable {
    public enum Outcome: Equatable, Sendable { case inOrder, reordered, duplicate }

    /// Distinct sequence numbers received.
    public private(set) var received: UInt64 = 0
    /// Copies of a sequence number already received.
    public private(set) var duplicated: UInt64 = 0
    /// Sequence numbers that arrived after a higher one from the same sender.
    public private(set) var reordered: UInt64 = 0
    /// One past the highest sequence number received (0 = none yet).
    public private(set) var next: UInt64 = 0
    /// Sequence numbers below `next` not received yet: half-open ranges, sorted, disjoint.
    private var missing: [Range<UInt64>] = []

    public init() {}

    public var missingBelowHighest: UInt64 {
        missing.reduce(0) { $0 + UInt64($1.count) }
    }

    @discardableResult
    public mutating func record(_ sequence: UInt64) -> Outcome {
        if sequence == next {
            next = sequence &+ 1
            received &+= 1
            return .inOrder
        }
        if sequence > next {
            missing.append(next..<sequence)
            next = sequence &+ 1
            received &+= 1
            return .inOrder
        }
        // Below the highest: either it fills a gap (late) or it was seen already.
        if let index = rangeIndex(containing: sequence) {
            let range = missing[index]
            let low = range.lowerBound..<sequence
            let high = (sequence + 1)..<range.upperBound
            switch (low.isEmpty, high.isEmpty) {
            case (true, true): missing.remove(at: index)
            case (false, true): missing[index] = low
            case (true, false): missing[index] = high
            case (false, false):
                missing[index] = low
                missing.insert(high, at: index + 1)
            }
            received &+= 1
            reordered &+= 1
            return .reordered
        }
        duplicated &+= 1
        return .duplicate
    }

    /// Of `expected` says sent (sequence numbers 0..<expected), how many never arrived.
    public func lost(expected: UInt64) -> UInt64 {
        expected > received ? expected - received : 0
    }

    private func rangeIndex(containing value: UInt64) -> Int? {
        var low = 0
        var high = missing.count
        while low < high {
            let mid = (low + high) / 2
            if missing[mid].upperBound <= value {
                low = mid + 1
            } else {
                high = mid
            }
        }
        return low < missing.count && missing[low].contains(value) ? low : nil
    }
}
