import Metrics
import NIOConcurrencyHelpers

/// Recovery counters and gauges (`chatmesh_recovery_*`), plus a copy of their values so
/// tests and the bench can read them without a metrics backend. Touched per recovery attempt
/// and per session change, never per message.
public final class RecoveryMetrics: Sendable {
    public struct Snapshot: Sendable, Equatable {
        public var attempted = 0
        public var succeeded = 0
        public var failed: [RecoveryFailure: Int] = [:]
        public var takenOver = 0
        public var sessionsHeld = 0
        public var bytesHeld = 0
    }

    private let attemptedCounter = Counter(label: "chatmesh_recovery_attempts_total")
    private let succeededCounter = Counter(label: "chatmesh_recovery_succeeded_total")
    private let failedCounters: [RecoveryFailure: Counter]
    private let takenOverCounter = Counter(label: "chatmesh_recovery_taken_over_total")
    private let sessionsHeldGauge = Gauge(label: "chatmesh_recovery_sessions_held")
    private let bytesHeldGauge = Gauge(label: "chatmesh_recovery_bytes_held")
    private let values = NIOLockedValueBox(Snapshot())

    public init() {
        // Every reason is registered up front, so each shows in /metrics from the start, at 0.
        failedCounters = Dictionary(uniqueKeysWithValues: RecoveryFailure.allCases.map {
            ($0, Counter(label: "chatmesh_recovery_failed_total", dimensions: [("reason", $0.rawValue)]))
        })
        sessionsHeldGauge.record(0)
        bytesHeldGauge.record(0)
    }

    public var snapshot: Snapshot { values.withLockedValue { $0 } }

    public func countAttempt() {
        attemptedCounter.increment()
        values.withLockedValue { $0.attempted += 1 }
    }

    public func countSuccess() {
        succeededCounter.increment()
        values.withLockedValue { $0.succeeded += 1 }
    }

    public func countFailure(_ reason: RecoveryFailure) {
        failedCounters[reason]!.increment()
        values.withLockedValue { $0.failed[reason, default: 0] += 1 }
    }

    public func countTakeover() {
        takenOverCounter.increment()
        values.withLockedValue { $0.takenOver += 1 }
    }

    /// The store's gauges, recorded when they change.
    public func recordHeld(sessions: Int, bytes: Int) {
        let changed = values.withLockedValue { values -> Bool in
            guard values.sessionsHeld != sessions || values.bytesHeld != bytes else { return false }
            values.sessionsHeld = sessions
            values.bytesHeld = bytes
            return true
        }
        guard changed else { return }
        sessionsHeldGauge.record(sessions)
        bytesHeldGauge.record(bytes)
    }
}
