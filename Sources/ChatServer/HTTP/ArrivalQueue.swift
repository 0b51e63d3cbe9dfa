import NIOCore

/// Elements in the order they joined, each with the time it joined: the oldest is first, and
/// any element leaves in O(1) through the entry it was given. Backs the per-loop lists of
/// connections waiting for a request head, where the oldest is both the next to time out and
/// the first to be evicted, and thousands leave from the middle as their requests arrive.
///
/// Entries link to each other strongly; `remove` unlinks an entry, so every entry must be
/// removed (or the queue dropped) to free it. Not thread-safe: one event loop owns a queue.
struct ArrivalQueue<Element: AnyObject> {
    final class Entry {
        let element: Element
        let since: NIODeadline
        fileprivate var previous: Entry?
        fileprivate var next: Entry?
        fileprivate var isQueued = true

        fileprivate init(element: Element, since: NIODeadline) {
            self.element = element
            self.since = since
        }
    }

    private(set) var first: Entry?
    private var last: Entry?
    private(set) var count = 0

    var isEmpty: Bool { first == nil }

    /// Adds `element` at the end; keep the entry to remove it later.
    mutating func append(_ element: Element, since: NIODeadline) -> Entry {
        let entry = Entry(element: element, since: since)
        entry.previous = last
        if let last { last.next = entry } else { first = entry }
        last = entry
        count += 1
        return entry
    }

    /// Takes `entry` out wherever it is; an entry removed already is left alone.
    mutating func remove(_ entry: Entry) {
        guard entry.isQueued else { return }
        entry.isQueued = false
        if let previous = entry.previous { previous.next = entry.next } else { first = entry.next }
        if let next = entry.next { next.previous = entry.previous } else { last = entry.previous }
        entry.previous = nil
        entry.next = nil
        count -= 1
    }

    /// Removes and returns the oldest entry.
    mutating func popFirst() -> Entry? {
        guard let entry = first else { return nil }
        remove(entry)
        return entry
    }
}
