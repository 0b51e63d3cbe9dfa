import NIOCore

/// Whether a repeating heartbeat ran on time. A peer's silence is evidence only when the loop
/// was free to read what the peer sent: after a tick that kept the loop busy past the
/// interval (a burst of work, a loaded host), the peer's replies may sit unread in the socket,
/// and closing the link then would cost a reconnect, loss and redelivery for nothing. So a
/// heartbeat that comes late still pings, but leaves judging silence to the next one.
public struct HeartbeatPunctuality: Sendable {
    private var last: NIODeadline?
    private let tolerance: TimeAmount

    /// `interval` is the heartbeat's period; a beat more than half a period late is late.
    public init(interval: TimeAmount) {
        self.tolerance = .nanoseconds(interval.nanoseconds + interval.nanoseconds / 2)
    }

    /// Records a beat at `now`; true when it came on time (the first beat counts as on time).
    public mutating func beat(at now: NIODeadline) -> Bool {
        defer { last = now }
        guard let last else { return true }
        return now - last <= tolerance
    }
}
