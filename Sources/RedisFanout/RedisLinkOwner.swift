import ClusterConfig
import Logging

/// What a `RedisLink` reports to: the single-node fanout, the cluster fanout (for every
/// shard's links) or the cluster's topology reader. All calls arrive on the owner's event
/// loop, the one the link's channel runs on.
protocol RedisLinkOwner: AnyObject {
    var logger: Logger { get }
    /// The setup commands were answered `+OK`: the link carries commands now.
    func linkReady(_ link: RedisLink)
    /// The connection closed (after `linkReady` or before).
    func linkClosed(_ link: RedisLink)
    /// Any value arrived (for the heartbeat's silence check).
    func heard(from link: RedisLink)
    /// A reply or push after the setup.
    func received(_ value: RESPValue, on link: RedisLink)
    /// The link reset itself (a malformed reply, a refused setup): count it.
    func linkReset(_ link: RedisLink, reason: String)
    /// What `error` on a TLS connection means, or nil when it is not about TLS.
    func tlsFailure(for error: any Error, on link: RedisLink, duringHandshake: Bool) -> RedisTLSFailure?
    /// A connection's TLS failed (log once per reason, count, show in /healthz).
    func tlsFailed(_ failure: RedisTLSFailure, on link: RedisLink, detail: String?)
}
