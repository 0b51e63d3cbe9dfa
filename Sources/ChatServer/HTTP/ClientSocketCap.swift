import ClusterConfig
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// How many client sockets a node accepts: `[limits] max_sockets`, or with 0 the process's
/// open-file limit (the soft one, which `serve` raises to the hard one at start) minus
/// `fd_reserve`. A configured value above that is lowered to it, so the reserve always holds:
/// the descriptors left over serve `/healthz`, `/metrics`, mesh links, Redis and logs.
struct ClientSocketCap: Equatable {
    /// Sockets admitted.
    let value: Int
    /// The open-file limit it was derived from (nil: unlimited or unknown).
    let descriptorLimit: Int?
    /// Set when the configured `max_sockets` had to be lowered, to log.
    let lowered: Bool

    init(maxSockets: Int, fdReserve: Int, descriptorLimit: Int?) {
        self.descriptorLimit = descriptorLimit
        // Even a tiny descriptor limit leaves room for a few clients; `check-config` is where
        // an unusable combination belongs, not a node that refuses everyone.
        let available = descriptorLimit.map { max($0 - fdReserve, min($0 / 2, 16)) } ?? Int.max
        if maxSockets > 0 {
            value = min(maxSockets, available)
            lowered = maxSockets > available
        } else {
            value = available
            lowered = false
        }
    }

    init(limits: LimitSettings) {
        self.init(maxSockets: limits.maxSockets, fdReserve: limits.fdReserve, descriptorLimit: Self.openFileLimit())
    }

    /// The soft RLIMIT_NOFILE, nil when unlimited.
    static func openFileLimit() -> Int? {
        var limit = rlimit()
        #if canImport(Glibc)
        let resource = Int32(RLIMIT_NOFILE.rawValue)
        #else
        let resource = RLIMIT_NOFILE
        #endif
        guard getrlimit(resource, &limit) == 0, limit.rlim_cur != rlim_t.max else { return nil }
        return Int(clamping: limit.rlim_cur)
    }
}
