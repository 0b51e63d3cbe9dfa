import NIOConcurrencyHelpers
import Synchronization

/// A setting a reload may replace while sessions on every event loop read it.
///
/// The value sits behind a lock (it may be a struct with arrays, too big for an atomic), and a
/// generation number beside it is an atomic. A hot-path reader (a session, on each `say`) keeps
/// its own copy and the generation it was read at, and only compares that number with
/// `generation`: one atomic load, no lock, no shared cache line written. Only after a reload,
/// once per reader, does it take the lock to read the new value (`refresh(_:)`).
/// Readers that run rarely (per accepted socket or request) just read `value`.
public final class LiveSetting<Value: Sendable>: Sendable {
    private let box: NIOLockedValueBox<(value: Value, generation: UInt64)>
    private let generationAtomic = Synchronization.Atomic<UInt64>(0)

    public init(_ value: Value) {
        box = NIOLockedValueBox((value, 0))
    }

    /// The current value (takes the lock).
    public var value: Value { box.withLockedValue { $0.value } }

    /// Bumped by every `set`; readers compare it with the one their copy was read at.
    public var generation: UInt64 { generationAtomic.load(ordering: .acquiring) }

    /// The current value and the generation it belongs to, read together.
    public var snapshot: Snapshot { box.withLockedValue { Snapshot(value: $0.value, generation: $0.generation) } }

    /// Replaces the value; readers see it on their next look.
    public func set(_ value: Value) {
        box.withLockedValue { stored in
            stored.value = value
            stored.generation &+= 1
            // Inside the lock, so the atomic never runs ahead of the value it announces.
            generationAtomic.store(stored.generation, ordering: .releasing)
        }
    }

    /// A reader's copy of the value, with the generation it was read at.
    public struct Snapshot: Sendable {
        public private(set) var value: Value
        public private(set) var generation: UInt64

        init(value: Value, generation: UInt64) {
            self.value = value
            self.generation = generation
        }
    }

    /// Brings `copy` up to date if a reload replaced the value since it was read; returns
    /// whether it did. Costs one atomic load when nothing changed.
    @discardableResult
    public func refresh(_ copy: inout Snapshot) -> Bool {
        guard generation != copy.generation else { return false }
        copy = snapshot
        return true
    }
}
