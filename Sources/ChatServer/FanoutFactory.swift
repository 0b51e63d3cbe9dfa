import ChatCore
import ClusterConfig
import Logging
import MeshFanout
import NIOCore
import RedisFanout

/// The one place that knows the fanout adapters: it picks the one cluster.conf asks for. A
/// new adapter is added here (and in its own module); the node only sees `any Fanout`.
enum FanoutFactory {
    /// Hands a reloaded config (`ConfigDiff.appliedConfig`) to the fanout; the future gives a
    /// line for the log saying what it changed. Kept beside the node's `any Fanout`, so the
    /// node does not learn which adapter runs.
    typealias Reload = @Sendable (ClusterConfig) -> EventLoopFuture<String>

    /// fanout = redis with a Redis URL: Redis pub/sub; on a cluster url (`redis+cluster://`)
    /// sharded pub/sub over the cluster's shards (`mode = sharded`, the default there), or
    /// classic pub/sub through any one cluster node, rotating through the seeds
    /// (`mode = classic`). fanout = mesh, with a mesh address for this node and another node
    /// that has one: the broker-free mesh. Otherwise the node has no one to talk to, and its
    /// rooms stay local.
    /// `epoch` is the process's: the mesh handshake announces it, and recovery derives this
    /// node's message origin from it, so both must be the same number.
    /// The reload closure is nil when the fanout has nothing a reload changes (a single node:
    /// no links); Redis takes new `[redis]` buffer bounds (the connections need a restart).
    static func make(config: ClusterConfig, node: NodeEntry, eventLoop: any EventLoop, epoch: UInt64, logger: Logger) -> (fanout: any Fanout, reload: Reload?) {
        if config.fanout == .redis, let url = config.redisURL {
            if url.cluster && config.redisMode == .sharded {
                let fanout = RedisClusterFanout(
                    url: url, tls: config.redisTLS, channelPrefix: config.channelPrefix,
                    bufferMessages: config.redisBuffer.bufferMessages, bufferTime: config.redisBuffer.bufferTime,
                    eventLoop: eventLoop, logger: logger
                )
                return (fanout, { config in fanout.applyBuffer(messages: config.redisBuffer.bufferMessages, time: config.redisBuffer.bufferTime) })
            }
            let fanout = RedisFanout(
                url: url, tls: config.redisTLS, channelPrefix: config.channelPrefix,
                bufferMessages: config.redisBuffer.bufferMessages, bufferTime: config.redisBuffer.bufferTime,
                eventLoop: eventLoop, logger: logger
            )
            return (fanout, { config in fanout.applyBuffer(messages: config.redisBuffer.bufferMessages, time: config.redisBuffer.bufferTime) })
        }
        let hasMeshPeer = config.nodes.contains { $0.name != node.name && $0.mesh != nil }
        if config.fanout == .mesh, node.mesh != nil, hasMeshPeer {
            let mesh = MeshFanout(config: config, localNode: node, eventLoop: eventLoop, logger: logger, epoch: epoch)
            return (mesh, meshReload(mesh))
        }
        return (LocalFanout(eventLoop: eventLoop), nil)
    }

    /// The mesh dials added peers, closes removed peers' links with GOODBYE (dropping what
    /// they subscribed), and takes the new `[mesh]` settings.
    static func meshReload(_ mesh: MeshFanout) -> Reload {
        { config in mesh.apply(config).map(\.description) }
    }

    /// Whether the fanout hears a room only while the node has members in it (Redis pub/sub):
    /// then a held session must keep its room subscribed to be recoverable (`HeldRoomInterest`).
    /// The mesh, with recovery on, sends every room to every node.
    static func subscribesPerLocalMember(_ fanout: any Fanout) -> Bool {
        fanout is RedisFanout || fanout is RedisClusterFanout
    }

    /// Whether other nodes hold this node's recoverable sessions and history (the mesh), so a
    /// session held here survives this node's stop.
    static func replicatesSessions(_ fanout: any Fanout) -> Bool {
        fanout is MeshFanout
    }
}
