import ClusterConfig
import NIOCore
import NIOPosix

/// Opens one connection to a Redis node with a `RedisLink` on it (TLS under it for
/// `rediss://`): the one way every Redis connection of this module is made.
enum RedisDialer {
    static let connectTimeout = TimeAmount.seconds(2)

    /// Completes with the channel when the TCP connection is made (the link's setup then
    /// runs), fails when it cannot be. `link` is made on `eventLoop` and never leaves it.
    static func dial(_ address: HostPort, tls: RedisTLSClient?, link: NIOLoopBound<RedisLink>,
                     on eventLoop: any EventLoop) -> EventLoopFuture<any Channel> {
        ClientBootstrap(group: eventLoop)
            .connectTimeout(connectTimeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tls { try channel.pipeline.syncOperations.addHandler(tls.makeHandler(host: address.host)) }
                    try channel.pipeline.syncOperations.addHandler(link.value)
                }
            }
            .connect(host: address.host, port: address.port)
    }

    /// AUTH (and SELECT, for a single node with a db) as the url asks.
    static func setupCommands(for url: RedisURL) -> [[RESPArgument]] {
        var commands: [[RESPArgument]] = []
        if let password = url.password {
            if let user = url.user, !user.isEmpty {
                commands.append(["AUTH", .string(user), .string(password)])
            } else {
                commands.append(["AUTH", .string(password)])
            }
        }
        if url.db != 0 { commands.append(["SELECT", .string(String(url.db))]) }
        return commands
    }
}
