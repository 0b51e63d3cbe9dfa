import ClusterConfig
import Logging
import NIOCore
import Testing
import ChatCore

@testable import ChatServer

/// `ChatNode.reload`: what a node takes from a reloaded cluster.conf and what it keeps.
struct ChatNodeReloadTests {
    private static let text = """
    [cluster]
    fanout = mesh
    [node a1]
    listen = 127.0.0.1:1
    """

    private func node() throws -> (ChatNode, ClusterConfig) {
        let config = try ClusterConfig.parse(Self.text, file: "cluster.conf")
        let entry = try #require(config.node(named: "a1"))
        return (ChatNode(config: config, node: entry, threads: 1, logger: Logger(label: "test")), config)
    }

    @Test func drainTimeoutLimitsAndTheWritePacingAreTaken() throws {
        let (chatNode, config) = try node()
        defer { chatNode.stop(timeout: .milliseconds(10)) }
        var loaded = config
        loaded.drainTimeout = .milliseconds(1234)
        loaded.limits.sayRate = config.limits.sayRate + 1
        loaded.limits.textMax = 17
        loaded.limits.maxWriteDelay = .zero
        #expect(chatNode.reload(to: loaded))
        #expect(chatNode.runningConfig.drainTimeout == .milliseconds(1234))
        #expect(chatNode.runningConfig.limits.sayRate == config.limits.sayRate + 1)
        // What sessions read: the node's live settings.
        #expect(chatNode.context.chatLimits.value.textMax == 17)
        #expect(chatNode.context.chatLimits.value.sayRate == config.limits.sayRate + 1)
        #expect(chatNode.context.limits.textMax == 17)
        #expect(chatNode.runningConfig.limits.maxWriteDelay == .zero)
        #expect(chatNode.context.hub.shards.allSatisfy { shard in
            (try? shard.eventLoop.submit { shard.maxWriteDelay }.wait()) == .zero
        })
    }

    @Test func engineSettingsAreTakenLive() throws {
        let (chatNode, config) = try node()
        defer { chatNode.stop(timeout: .milliseconds(10)) }
        var loaded = config
        loaded.engine.allowedOrigins = ["https://chat.example.org"]
        loaded.engine.pingInterval = .milliseconds(5000)
        #expect(chatNode.reload(to: loaded))
        #expect(!chatNode.context.isOriginAllowed("https://other.example.org"))
        #expect(chatNode.context.engine.pingInterval == .milliseconds(5000))
        #expect(chatNode.runningConfig.engine == loaded.engine)
    }

    @Test func recoveryBoundsReachTheStore() throws {
        var config = try ClusterConfig.parse(Self.text + "\n[recovery]\nenabled = on\nroom_messages = 100\n", file: "cluster.conf")
        let entry = try #require(config.node(named: "a1"))
        let chatNode = ChatNode(config: config, node: entry, threads: 1, logger: Logger(label: "test"))
        defer { chatNode.stop(timeout: .milliseconds(10)) }
        let store = try #require(chatNode.recovery)
        config.recovery.roomMessages = 7
        config.recovery.catchUp = .milliseconds(3000)
        #expect(chatNode.reload(to: config))
        let policy = try store.eventLoop.submit { store.policy }.wait()
        #expect(policy.roomMessages == 7)
        #expect(policy.catchUp == .milliseconds(3000))
        #expect(chatNode.runningConfig.recovery.roomMessages == 7)
    }

    /// The level every logger of the process reads follows `[cluster] log_level`; without it,
    /// the `--log-level` flag's level comes back.
    @Test func theLogLevelFollowsTheReloadedFile() throws {
        let config = try ClusterConfig.parse(Self.text, file: "cluster.conf")
        let entry = try #require(config.node(named: "a1"))
        let levels = LiveLogLevel(flag: .info)
        var logger = Logger(label: "test", factory: { _ in levels.handler(base: SwiftLogNoOpLogHandler()) })
        let chatNode = ChatNode(config: config, node: entry, threads: 1, logger: logger, logLevel: levels)
        defer { chatNode.stop(timeout: .milliseconds(10)) }
        var loaded = config
        loaded.logLevel = "debug"
        #expect(chatNode.reload(to: loaded))
        #expect(logger.logLevel == .debug, "a logger made before the reload")
        #expect(chatNode.runningConfig.logLevel == "debug")
        loaded.logLevel = nil
        #expect(chatNode.reload(to: loaded))
        #expect(logger.logLevel == .info)
        // A level set on one logger stays that logger's.
        logger.logLevel = .error
        loaded.logLevel = "trace"
        #expect(chatNode.reload(to: loaded))
        #expect(logger.logLevel == .error)
        #expect(Logger(label: "other", factory: { _ in levels.handler(base: SwiftLogNoOpLogHandler()) }).logLevel == .trace)
    }

    /// A node that was not given the process's live level (as in these tests) cannot change
    /// it: the change is reported as needing a restart and the running config keeps the old one.
    @Test func withoutALiveLevelTheLogLevelWaitsForARestart() throws {
        let (chatNode, config) = try node()
        defer { chatNode.stop(timeout: .milliseconds(10)) }
        var loaded = config
        loaded.logLevel = "debug"
        #expect(chatNode.reload(to: loaded))
        #expect(chatNode.runningConfig.logLevel == nil)
    }

    /// A Redis node hands new `[redis] buffer_*` bounds to its fanout (no Redis needed: the
    /// fanout takes them on its loop whether or not it is connected).
    @Test func aRedisNodeTakesNewBufferBounds() throws {
        let config = try ClusterConfig.parse("""
            [cluster]
            fanout = redis
            [redis]
            url = redis://127.0.0.1:1
            buffer_messages = 100
            [node a1]
            listen = 127.0.0.1:1
            """, file: "cluster.conf")
        let entry = try #require(config.node(named: "a1"))
        let chatNode = ChatNode(config: config, node: entry, threads: 1, logger: Logger(label: "test"))
        defer { chatNode.stop(timeout: .milliseconds(10)) }
        var loaded = config
        loaded.redisBuffer.bufferMessages = 5
        loaded.redisBuffer.bufferTime = .milliseconds(700)
        #expect(chatNode.reload(to: loaded))
        #expect(chatNode.runningConfig.redisBuffer == loaded.redisBuffer)
    }

    @Test func aNodeWithoutMeshLinksKeepsItsPeerListUntilARestart() throws {
        let (chatNode, config) = try node()
        defer { chatNode.stop(timeout: .milliseconds(10)) }
        var loaded = config
        loaded.nodes.append(NodeEntry(name: "a2", listen: HostPort(host: "127.0.0.1", port: 2),
                                      mesh: HostPort(host: "127.0.0.1", port: 3)))
        loaded.nodes[0].mesh = HostPort(host: "127.0.0.1", port: 4)
        #expect(chatNode.reload(to: loaded))
        #expect(chatNode.runningConfig.nodes.map(\.name) == ["a1"])
    }

    @Test func aRejectedFileLeavesTheRunningConfig() throws {
        let (chatNode, config) = try node()
        defer { chatNode.stop(timeout: .milliseconds(10)) }
        chatNode.reloadRejected("cluster.conf:3: bad")
        #expect(chatNode.runningConfig == config)
    }
}
