import NIOCore

/// Waits for a condition without blocking a thread: the condition is checked on an event loop
/// now and then every `interval` until it holds or the deadline passes. Used when draining,
/// where what is awaited (sessions leaving, acknowledgements arriving) has no single event.
public enum ScheduledCheck {
    /// Succeeds with true once `isDone` returned true, with false if `deadline` came first.
    /// `isDone` runs on `eventLoop`, so it may read state confined to that loop. Time is the
    /// loop's own (`EventLoop.now`: the monotonic clock, unless a test drives it).
    public static func until(
        _ deadline: NIODeadline, every interval: TimeAmount, on eventLoop: any EventLoop,
        _ isDone: @escaping @Sendable () -> Bool
    ) -> EventLoopFuture<Bool> {
        let promise = eventLoop.makePromise(of: Bool.self)
        @Sendable func check() {
            if isDone() { return promise.succeed(true) }
            let now = eventLoop.now
            guard now < deadline else { return promise.succeed(false) }
            eventLoop.scheduleTask(deadline: min(now + interval, deadline)) { check() }
        }
        eventLoop.execute { check() }
        return promise.futureResult
    }
}
