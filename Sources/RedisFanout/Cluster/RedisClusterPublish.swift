import ClusterConfig

/// One say on its way to a Redis Cluster: `SPUBLISH channel payload` to the primary that owns
/// the channel's hash slot.
struct RedisClusterPublish: Sendable {
    /// Taken from one counter as says arrive: a room's says are sent in this order, whichever
    /// shard queue they wait in.
    var sequence: UInt64
    var room: String
    var channel: String
    var payload: String
    var slot: Int
    /// `NIODeadline.now().uptimeNanoseconds` when it was handed over (the buffer's age bound).
    var enqueuedAt: UInt64
    /// MOVED replies this say has followed since it last went back to waiting.
    var redirects = 0
    /// The node an `-ASK` named: sent there once, after `ASKING`.
    var askTarget: HostPort?
}
