import NIOCore

/// Exponential backoff with jitter for reconnecting a fanout link (mesh peers, Redis): 100 ms doubling up to a cap, each delay
/// drawn from [½, 1] of the nominal value so that nodes restarting together do not dial in step.
///
/// A user that reports its link's life (`linkUp(at:)` / `linkDown(at:)`, the mesh does) starts over only once a link has
/// stayed up for `stableAfter`: a peer that accepts the link and drops it at once (it refuses a frame, it crashes at start)
/// is redialed later and later, not every 100 ms. A user that calls `reset()` at each connect (Redis) starts over at once.
public struct ReconnectBackoff: Sendable {
    public let baseMs: Int
    public let capMs: Int
    /// How long a link must stay up before its loss starts the backoff over (`linkDown(at:)`).
    public let stableAfter: TimeAmount
    public private(set) var attempts = 0
    /// When the current link came up; nil while there is none.
    public private(set) var upSince: NIODeadline?

    public static let defaultStableAfter = TimeAmount.seconds(10)

    public init(baseMs: Int = 100, capMs: Int, stableAfter: TimeAmount = Self.defaultStableAfter) {
        self.baseMs = baseMs
        self.capMs = max(baseMs, capMs)
        self.stableAfter = stableAfter
    }

    /// `base` and `cap` count in whole milliseconds, the granularity of the jitter.
    public init(base: TimeAmount = .milliseconds(100), cap: TimeAmount, stableAfter: TimeAmount = Self.defaultStableAfter) {
        self.init(baseMs: Int(base.nanoseconds / 1_000_000), capMs: Int(cap.nanoseconds / 1_000_000), stableAfter: stableAfter)
    }

    public mutating func nextDelay() -> TimeAmount {
        .milliseconds(Int64(nextDelayMs()))
    }

    public mutating func nextDelayMs<R: RandomNumberGenerator>(using generator: inout R) -> Int {
        let nominal = min(capMs, baseMs << min(attempts, 20))
        attempts += 1
        return Int.random(in: (nominal / 2)...nominal, using: &generator)
    }

    public mutating func nextDelayMs() -> Int {
        var generator = SystemRandomNumberGenerator()
        return nextDelayMs(using: &generator)
    }

    public mutating func reset() {
        attempts = 0
    }

    /// A link came up. The attempts so far still count until it has lasted `stableAfter`.
    public mutating func linkUp(at now: NIODeadline) {
        upSince = now
    }

    /// The link went down: a link that lasted `stableAfter` or longer starts the backoff over,
    /// a shorter one leaves it where the dials before it brought it.
    public mutating func linkDown(at now: NIODeadline) {
        if let upSince, now - upSince >= stableAfter { attempts = 0 }
        upSince = nil
    }

    /// Milliseconds to wait before the first dial of `peers` peers (at start, or when a reload adds them), drawn from
    /// [0, min(`maxMs`, `perPeerMs` × `peers`)]. Nodes started together (a cluster's cold start, a mass restart, a reload
    /// every node takes at once) would otherwise all dial at the same instant, and each node would take N − 1
    /// handshakes in the same few milliseconds; the window grows with the cluster, so a small one still forms at once.
    ///
    /// Callers in other modules use this one: with the system's generator made here. Handing a
    /// generator `inout` across the module boundary crashed ThreadSanitizer builds (a SEGV in its
    /// access instrumentation, at the first mesh start of every node); `nextDelayMs()` does the same.
    public static func firstDialDelayMs(peers: Int, perPeerMs: Int = 10, maxMs: Int = 1000) -> Int {
        var generator = SystemRandomNumberGenerator()
        return firstDialDelayMs(peers: peers, perPeerMs: perPeerMs, maxMs: maxMs, using: &generator)
    }

    public static func firstDialDelayMs<R: RandomNumberGenerator>(peers: Int, perPeerMs: Int = 10, maxMs: Int = 1000,
                                                                  using generator: inout R) -> Int {
        let window = min(maxMs, perPeerMs * max(0, peers))
        return window > 0 ? Int.random(in: 0...window, using: &generator) : 0
    }
}
