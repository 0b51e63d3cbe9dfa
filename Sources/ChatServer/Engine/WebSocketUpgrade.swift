import EngineIO
import NIOCore
import NIOHTTP1
import NIOWebSocket

/// Decides which WebSocket upgrades to accept on `/socket.io/` and wires the upgraded channel
/// to its session: a new WebSocket-only session, or the probe of a polling session's upgrade.
/// A refused upgrade falls through to `HTTPRouter`, which answers with the Engine.IO error.
struct WebSocketUpgrade {
    let context: ServerContext

    func makeUpgrader() -> NIOWebSocketServerUpgrader {
        let context = self.context
        return NIOWebSocketServerUpgrader(
            maxFrameSize: context.engine.maxPayload,
            automaticErrorHandling: true,
            shouldUpgrade: { channel, head in
                Self.shouldUpgrade(channel: channel, head: head, context: context)
            },
            upgradePipelineHandler: { channel, head in
                Self.upgradePipeline(channel: channel, head: head, context: context)
            }
        )
    }

    private static func shouldUpgrade(channel: any Channel, head: HTTPRequestHead, context: ServerContext) -> EventLoopFuture<HTTPHeaders?> {
        guard case .success(let request)? = EngineRequest.parse(uri: head.uri), request.transport == .websocket,
              context.isOriginAllowed(head.headers.first(name: "origin"))
        else { return channel.eventLoop.makeSucceededFuture(nil) }
        guard let sid = request.sid else {
            // While draining no new session starts here; the router answers 503.
            return channel.eventLoop.makeSucceededFuture(context.isDraining ? nil : [:])
        }
        guard let session = context.sessions.session(sid) else {
            return channel.eventLoop.makeSucceededFuture(nil)
        }
        // The upgrade is claimed on the session's loop, so two probes cannot both win.
        return session.eventLoop.submit { session.beginUpgrade(probe: channel) ? HTTPHeaders() : nil }
            .hop(to: channel.eventLoop)
    }

    private static func upgradePipeline(channel: any Channel, head: HTTPRequestHead, context: ServerContext) -> EventLoopFuture<Void> {
        let request = try? EngineRequest.parse(uri: head.uri)?.get()
        let session: EngineSession
        let isNew: Bool
        if let sid = request?.sid, let existing = context.sessions.session(sid) {
            session = existing
            isNew = false
        } else {
            session = EngineSession(eventLoop: channel.eventLoop, transport: .websocket, query: request?.query ?? [:], context: context)
            isNew = true
        }
        return channel.pipeline.removeHandler(name: HTTPRouter.name).flatMap {
            channel.pipeline.removeHandler(name: HTTPRouter.idleHandlerName)
        }.flatMapThrowing { () -> WebSocketRawWriter in
            let rawWriter = WebSocketRawWriter()
            try channel.pipeline.syncOperations.addHandler(rawWriter, position: .first)
            try channel.pipeline.syncOperations.addHandlers([
                NIOWebSocketFrameAggregator(
                    minNonFinalFragmentSize: 0, maxAccumulatedFrameCount: 1024,
                    maxAccumulatedFrameSize: context.engine.maxPayload
                ),
                WebSocketEngineHandler(session: session, metrics: context.metrics),
            ])
            return rawWriter
        }.map { rawWriter in
            guard isNew else {
                session.eventLoop.execute { session.probePipelineReady(channel, rawWriter: rawWriter) }
                return
            }
            guard context.sessions.insert(session, limit: context.limits.maxConnections) else {
                context.metrics.countError("max_connections")
                var data = channel.allocator.buffer(capacity: 32)
                data.write(webSocketErrorCode: .unknown(1013))
                data.writeString("too many connections")
                channel.writeAndFlush(WebSocketFrame(fin: true, opcode: .connectionClose, data: data)).whenComplete { _ in
                    channel.close(promise: nil)
                }
                return
            }
            session.open(webSocket: channel, rawWriter: rawWriter)
        }
    }
}
