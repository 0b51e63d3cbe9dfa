import Dispatch
import NIOCore

/// The systemd side of a running node: `STATUS=` every few seconds, and `WATCHDOG=1` at half
/// the watchdog interval, sent only after a no-op task has run on every event loop, so a
/// stalled loop stops the pings and systemd restarts the node.
public final class ServiceHeartbeat: @unchecked Sendable {  // unchecked: the mutable state (timers, announcedReady) is touched only on `queue`
    private let queue = DispatchQueue(label: "chatmesh.systemd")
    private let eventLoops: [any EventLoop]
    private let status: @Sendable () -> String
    private let isReady: @Sendable () -> Bool
    private var statusTimer: DispatchSourceTimer?
    private var watchdogTimer: DispatchSourceTimer?
    private var readinessTimer: DispatchSourceTimer?
    private var announcedReady = false

    public init(eventLoops: [any EventLoop], isReady: @escaping @Sendable () -> Bool, status: @escaping @Sendable () -> String) {
        self.eventLoops = eventLoops
        self.isReady = isReady
        self.status = status
    }

    /// Sends READY=1 as soon as the node is ready (at once, or when Redis comes up), then
    /// keeps status and watchdog going.
    public func start(statusInterval: DispatchTimeInterval = .seconds(2)) {
        queue.sync {
            checkReadiness()
            if !announcedReady {
                // Not ready yet (Redis mode before the subscriber is up): look often, so READY=1
                // follows readiness closely; the timer ends once it is sent.
                let readinessTimer = DispatchSource.makeTimerSource(queue: queue)
                readinessTimer.schedule(deadline: .now() + .milliseconds(50), repeating: .milliseconds(50))
                readinessTimer.setEventHandler { [weak self] in
                    guard let self else { return }
                    checkReadiness()
                    if announcedReady { self.readinessTimer?.cancel() }
                }
                readinessTimer.resume()
                self.readinessTimer = readinessTimer
            }
            let statusTimer = DispatchSource.makeTimerSource(queue: queue)
            statusTimer.schedule(deadline: .now() + .milliseconds(200), repeating: statusInterval)
            statusTimer.setEventHandler { [weak self] in
                guard let self else { return }
                checkReadiness()
                SystemdNotifier.status(status())
            }
            statusTimer.resume()
            self.statusTimer = statusTimer
            if let interval = SystemdNotifier.watchdogInterval() {
                let half = DispatchTimeInterval.microseconds(Int(interval / 2))
                let watchdogTimer = DispatchSource.makeTimerSource(queue: queue)
                watchdogTimer.schedule(deadline: .now(), repeating: half)
                watchdogTimer.setEventHandler { [weak self] in
                    guard let self, loopsAreResponsive(within: .microseconds(Int64(interval / 2))) else { return }
                    SystemdNotifier.watchdog()
                }
                watchdogTimer.resume()
                self.watchdogTimer = watchdogTimer
            }
        }
    }

    /// Stops status and watchdog pings. Asynchronous, so it may be called from any queue
    /// (including one that a status callback waits on) without deadlocking.
    public func stop() {
        queue.async { [self] in
            statusTimer?.cancel()
            watchdogTimer?.cancel()
            readinessTimer?.cancel()
        }
    }

    private func checkReadiness() {
        guard !announcedReady, isReady() else { return }
        announcedReady = true
        SystemdNotifier.ready()
    }

    /// True if every event loop runs a no-op within `deadline`.
    func loopsAreResponsive(within deadline: TimeAmount) -> Bool {
        let group = DispatchGroup()
        for loop in eventLoops {
            group.enter()
            loop.execute { group.leave() }
        }
        return group.wait(timeout: .now() + .nanoseconds(Int(deadline.nanoseconds))) == .success
    }
}
