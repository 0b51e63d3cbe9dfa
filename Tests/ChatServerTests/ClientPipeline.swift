import NIOCore
import NIOEmbedded
import NIOHTTP1

@testable import ChatServer

/// A client connection on `loop` with the pipeline ChatNode gives each accepted socket (HTTP
/// codec, the WebSocket upgrader, the idle timer, the router), connected and ready for bytes.
func connectedClientPipeline(server: ServerContext, loop: EmbeddedEventLoop) throws -> EmbeddedChannel {
    let channel = EmbeddedChannel(loop: loop)
    try channel.pipeline.configureHTTPServerPipeline(
        withServerUpgrade: (upgraders: [WebSocketUpgrade(server: server)], completionHandler: { _ in })
    ).wait()
    try channel.pipeline.syncOperations.addHandler(IdleStateHandler(readTimeout: .seconds(60)), name: HTTPRouter.idleHandlerName)
    try channel.pipeline.syncOperations.addHandler(HTTPRouter(server: server), name: HTTPRouter.name)
    try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 40000)).wait()
    return channel
}
