import ClusterConfig
import Logging
import NIOCore
import Testing

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

    @Test func drainTimeoutIsTakenAndALimitWaitsForARestart() throws {
        let (chatNode, config) = try node()
        defer { chatNode.stop(timeout: .milliseconds(10)) }
        var loaded = config
        loaded.drainTimeout = .milliseconds(1234)
        loaded.limits.sayRate = config.limits.sayRate + 1
        #expect(chatNode.reload(to: loaded))
        #expect(chatNode.runningConfig.drainTimeout == .milliseconds(1234))
        // Not swapped live: the running config keeps the old value, so the next reload
        // reports the change again.
        #expect(chatNode.runningConfig.limits.sayRate == config.limits.sayRate)
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
