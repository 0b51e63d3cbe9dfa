import NIOConcurrencyHelpers
import NIOCore
import Synchronization

/// The client sockets the listener has accepted and their own loops have not yet admitted or
/// refused: each holds a descriptor, so the socket cap counts them (`ConnectionGate`). A
/// socket leaves once, by its admission or by its close, whichever comes first: a socket
/// whose setup fails before admission is closed by NIO and must not stay counted.
///
/// The accept (listener's loop) and the admission (the socket's loop) run on different loops,
/// hence a lock; it is taken twice per connection, never per request. NIO's lock, not
/// `Synchronization.Mutex`: ThreadSanitizer does not see the Mutex's futex and reported a race
/// between the accept and the admission on every ThreadSanitizer run.
final class AcceptedSockets: Sendable {
    private let waiting = NIOLockedValueBox(Set<ObjectIdentifier>())
    private let countAtomic = Atomic<Int>(0)

    /// Sockets accepted and not yet admitted (from any thread).
    var count: Int { countAtomic.load(ordering: .relaxed) }

    /// On the listener's loop, as `accept` returns `channel`.
    func insert(_ channel: any Channel) {
        let id = ObjectIdentifier(channel)
        waiting.withLockedValue { _ = $0.insert(id) }
        countAtomic.add(1, ordering: .relaxed)
        // The closure holds the channel, so its identity is not reused until it has left.
        channel.closeFuture.whenComplete { _ in self.remove(channel) }
    }

    /// The socket was admitted or refused, or is closed.
    func remove(_ channel: any Channel) {
        let id = ObjectIdentifier(channel)
        guard waiting.withLockedValue({ $0.remove(id) }) != nil else { return }
        countAtomic.subtract(1, ordering: .relaxed)
    }
}
