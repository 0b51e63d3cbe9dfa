/// What a Redis error reply means for a client of a Redis Cluster, from its first word (the
/// error code Redis puts there) or, for the one reply without a code of its own, its text.
public enum RedisClusterErrorKind: Sendable, Equatable {
    /// `MOVED <slot> <host:port>`: the slot lives elsewhere for good; re-read the topology
    /// (`RedisRedirect.parse` gives the new address).
    case moved
    /// `ASK <slot> <host:port>`: the slot is migrating; send `ASKING` then the command to the
    /// named node, this once.
    case ask
    /// `CLUSTERDOWN ...`: the cluster cannot serve the slot now (no quorum, slot unassigned,
    /// a failover in progress); retry later with backoff.
    case clusterDown
    /// `TRYAGAIN ...`: the slot is being resharded; retry shortly.
    case tryAgain
    /// `ERR This instance has cluster support disabled`: a single Redis given as a cluster
    /// seed; retrying does not help until its configuration changes.
    case clusterSupportDisabled
    /// Any other error: not about the cluster.
    case other

    /// Classifies an error reply's text (`RESPValue.error`'s payload, without the '-').
    public static func classify(_ errorText: String) -> RedisClusterErrorKind {
        let code = errorText.prefix { $0 != " " }
        switch code {
        case "MOVED": return .moved
        case "ASK": return .ask
        case "CLUSTERDOWN": return .clusterDown
        case "TRYAGAIN": return .tryAgain
        case "ERR" where errorText.lowercased().contains("cluster support disabled"):
            return .clusterSupportDisabled
        default: return .other
        }
    }

    /// True for the kinds that go away by themselves (retry with backoff): the cluster is
    /// failing over or resharding.
    public var isTransient: Bool {
        self == .clusterDown || self == .tryAgain
    }
}
