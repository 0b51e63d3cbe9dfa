import NIOCore

/// The drains waiting on a fanout adapter for what it sent to be settled (mesh PUBs
/// acknowledged by every live peer, Redis PUBLISHes answered). The adapter calls `settle()`
/// from the events that can settle it (an ACK, a reply, a link going down), once its
/// outstanding count is zero; every waiting drain then completes with true at once. A drain
/// whose deadline comes first completes with false then. No polling: nothing runs between
/// those events.
///
/// Confined to `eventLoop`, like the adapter state it waits on: every method runs there.
public final class DrainWaiters {
    private struct Waiter {
        let promise: EventLoopPromise<Bool>
        let timeout: Scheduled<Void>
    }

    private let eventLoop: any EventLoop
    private var waiting: [Waiter] = []

    public init(eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
    }

    /// Whether any drain waits, so an adapter only checks its outstanding count when it matters.
    public var isEmpty: Bool { waiting.isEmpty }

    /// A drain that is not settled yet: true once `settle()` is called, false at `deadline`.
    public func wait(until deadline: NIODeadline) -> EventLoopFuture<Bool> {
        eventLoop.preconditionInEventLoop()
        let promise = eventLoop.makePromise(of: Bool.self)
        let timeout = eventLoop.assumeIsolated().scheduleTask(deadline: deadline) { [self] in
            waiting.removeAll { $0.promise.futureResult === promise.futureResult }
            promise.succeed(false)
        }
        waiting.append(Waiter(promise: promise, timeout: timeout))
        return promise.futureResult
    }

    /// Everything sent is settled: every waiting drain completes with true.
    public func settle() {
        eventLoop.preconditionInEventLoop()
        let settled = waiting
        waiting.removeAll()
        for waiter in settled {
            waiter.timeout.cancel()
            waiter.promise.succeed(true)
        }
    }
}
