/// Where a room message comes from and where it stands in that source's order: the process
/// that published it (`origin`, folded from its epoch) and its sequence, 1, 2, 3 … per origin
/// per room. Every node sees one origin's messages of a room in sequence order, whatever the
/// interleaving with other origins, which is what makes an offset meaningful on any node.
public struct MessageOrigin: Sendable, Hashable {
    public var origin: UInt32
    public var sequence: UInt64

    public init(origin: UInt32, sequence: UInt64) {
        self.origin = origin
        self.sequence = sequence
    }

    /// A process epoch folded to 32 bits (an offset carries it in every entry, so it is kept
    /// short), never 0 so that 0 can mean "no origin". The fold mixes all 64 bits, so epochs
    /// that differ only in their high half still get different ids.
    public static func originID(epoch: UInt64) -> UInt32 {
        var x = epoch
        // splitmix64's finaliser: every input bit reaches every output bit.
        x = (x ^ (x >> 30)) &* 0xBF58_476D_1CE4_E5B9
        x = (x ^ (x >> 27)) &* 0x94D0_49BB_1331_11EB
        x ^= x >> 31
        let folded = UInt32(truncatingIfNeeded: x ^ (x >> 32))
        return folded == 0 ? 1 : folded
    }
}
