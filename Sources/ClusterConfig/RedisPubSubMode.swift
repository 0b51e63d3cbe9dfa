/// `[redis] mode`: which pub/sub commands carry the rooms.
public enum RedisPubSubMode: String, Sendable, CaseIterable {
    /// `SUBSCRIBE` / `PUBLISH`. A Redis Cluster broadcasts every classic message to every
    /// node, so this does not scale with shards, but original Node workers speak only this.
    case classic
    /// `SSUBSCRIBE` / `SPUBLISH` (Redis 7+): a room's messages stay within the shard that
    /// owns its channel's hash slot. Needs a cluster url.
    case sharded
}
