import EngineIO
import NIOCore
import NIOHTTP1
import NIOWebSocket
import CLibCrypto

/// The WebSocket upgrade on `/socket.io/` (RFC 6455 §4.2): decides which upgrades to accept and
/// wires the upgraded channel to its session, a new WebSocket-only session or the probe of a
/// polling session's upgrade. A refused upgrade falls through to `HTTPRouter`, which answers
/// with the Engine.IO error. An upgrade for a session that is open but cannot take it (upgraded
/// already, or upgrading through another socket) is, as on the reference server, accepted and
/// then closed at once. An upgrade for a session another node owns is relayed to that node
/// (docs/RELAY.md): the handshake completes here and the frames go over the mesh.
///
/// Our own upgrader rather than NIO's: NIO's puts a frame encoder and an error handler into
/// every pipeline that cannot be taken out again, and this server writes frames as bytes
/// (`WebSocketWire`), so after the upgrade a connection holds only NIO's frame decoder and one
/// `WebSocketEngineHandler`.
struct WebSocketUpgrade: HTTPServerProtocolUpgrader, Sendable {
    let server: ServerContext

    let supportedProtocol = "websocket"
    /// Headers the `Connection` header must name (h2c style); WebSocket needs none.
    let requiredUpgradeHeaders: [String] = []

    /// RFC 6455 §1.3: the accept value proves the server read this handshake.
    static let acceptGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

    enum UpgradeError: Error {
        case invalidUpgradeHeader
        case refused
    }

    func buildUpgradeResponse(channel: any Channel, upgradeRequest: HTTPRequestHead, initialResponseHeaders: HTTPHeaders) -> EventLoopFuture<HTTPHeaders> {
        let keys = upgradeRequest.headers[canonicalForm: "sec-websocket-key"]
        let versions = upgradeRequest.headers[canonicalForm: "sec-websocket-version"]
        guard keys.count == 1, versions.count == 1, versions[0] == "13" else {
            return channel.eventLoop.makeFailedFuture(UpgradeError.invalidUpgradeHeader)
        }
        let accept = Self.acceptValue(key: String(keys[0]))
        return Self.shouldUpgrade(channel: channel, head: upgradeRequest, server: server).flatMapThrowing { extra in
            guard var headers = extra else { throw UpgradeError.refused }
            headers.replaceOrAdd(name: "Upgrade", value: "websocket")
            headers.add(name: "Sec-WebSocket-Accept", value: accept)
            headers.replaceOrAdd(name: "Connection", value: "upgrade")
            return headers
        }
    }

    func upgrade(context: ChannelHandlerContext, upgradeRequest: HTTPRequestHead) -> EventLoopFuture<Void> {
        Self.upgradePipeline(channel: context.channel, head: upgradeRequest, server: server)
    }

    static func acceptValue(key: String) -> String {
        let bytes = Array((key + acceptGUID).utf8)
        var digest = [UInt8](repeating: 0, count: Int(SHA_DIGEST_LENGTH))
        _ = digest.withUnsafeMutableBufferPointer { SHA1(bytes, bytes.count, $0.baseAddress) }  // OpenSSL's libcrypto
        return Base64.encode(digest)
    }

    private static func shouldUpgrade(channel: any Channel, head: HTTPRequestHead, server: ServerContext) -> EventLoopFuture<HTTPHeaders?> {
        guard case .success(let request)? = EngineRequest.parse(uri: head.uri), request.transport == .websocket,
              server.isOriginAllowed(head.headers.first(name: "origin"))
        else { return channel.eventLoop.makeSucceededFuture(nil) }
        guard let sid = request.sid else {
            // While draining, or with max_connections sessions open, no new session starts
            // here: the router answers 503 before any upgrade, which costs a node under a
            // connection storm little and lets a proxy try the next node.
            let refuse = server.isDraining || server.sessions.count >= server.limits.maxConnections
            return channel.eventLoop.makeSucceededFuture(refuse ? nil : [:])
        }
        guard let session = server.sessions.session(sid) else {
            return channel.eventLoop.makeSucceededFuture(openRelayed(channel: channel, head: head, sid: sid, server: server) ? [:] : nil)
        }
        // The upgrade is claimed on the session's loop, so two probes cannot both win; the
        // loser is accepted too, and closed once upgraded (`upgradePipeline`).
        return session.eventLoop.submit { session.beginUpgrade(probe: .local(channel)) == .closed ? nil : HTTPHeaders() }
            .hop(to: channel.eventLoop)
    }

    /// A sid another node owns: opens the relayed stream to it and keeps it with the
    /// connection's router until the pipeline is upgraded. False (the usual unknown-sid answer)
    /// when the sid names no peer, or the owner cannot be reached now.
    private static func openRelayed(channel: any Channel, head: HTTPRequestHead, sid: String, server: ServerContext) -> Bool {
        guard let relay = server.relay, relay.isPeerSession(sid: sid),
              let router = try? channel.pipeline.syncOperations.handler(type: HTTPRouter.self),
              let socket = RelayedWebSocket.open(
                channel: channel, sid: sid, origin: head.headers.first(name: "origin"), relay: relay, metrics: server.metrics
              )
        else { return false }
        router.relayedWebSocket = socket
        return true
    }

    private static func upgradePipeline(channel: any Channel, head: HTTPRequestHead, server: ServerContext) -> EventLoopFuture<Void> {
        let request = try? EngineRequest.parse(uri: head.uri)?.get()
        // Only an upgrade of a session, on a node that relays, can be another node's.
        if server.relay != nil, request?.sid != nil, let router = try? channel.pipeline.syncOperations.handler(type: HTTPRouter.self),
           let relayed = router.relayedWebSocket {
            router.relayedWebSocket = nil
            return removeHTTPHandlers(channel).flatMapThrowing {
                let handler = WebSocketEngineHandler(target: .relay(relayed), metrics: server.metrics, maxMessageSize: server.engine.maxPayload)
                try channel.pipeline.syncOperations.addHandler(handler)
                relayed.pipelineReady()
            }
        }
        let session: EngineSession
        let isNew: Bool
        if let sid = request?.sid {
            // An upgrade of a session: never a new one, even if this session closed meanwhile.
            guard let existing = server.sessions.session(sid) else {
                return removeHTTPHandlers(channel).map { refuseUpgraded(channel, reason: "session closed") }
            }
            session = existing
            isNew = false
        } else {
            session = EngineSession(eventLoop: channel.eventLoop, transport: .websocket, query: request?.query ?? [:], server: server)
            isNew = true
        }
        return removeHTTPHandlers(channel).flatMapThrowing {
            // On the channel's loop: the handler lives there, and goes to a session on another
            // loop only bound to this one.
            let handler = WebSocketEngineHandler(session: session, metrics: server.metrics, maxMessageSize: server.engine.maxPayload)
            try channel.pipeline.syncOperations.addHandler(handler)
            guard isNew else {
                let writer = NIOLoopBound(handler, eventLoop: channel.eventLoop)
                session.eventLoop.execute {
                    // Not the session's probe: it was upgraded or upgrading already when this
                    // socket asked. Frames it sent meanwhile were ignored (not its channel).
                    if !session.probePipelineReady(channel, writer: writer) {
                        refuseUpgraded(channel, reason: "session already upgraded")
                    }
                }
                return
            }
            // The limit was checked before the upgrade; this catches the ones that raced past.
            guard server.sessions.insert(session, limit: server.limits.maxConnections) else {
                server.metrics.countError("max_connections")
                let frame = WebSocketWire.closeFrame(code: .unknown(1013), reason: "too many connections", allocator: channel.allocator)
                channel.writeAndFlush(frame).whenComplete { _ in
                    channel.close(promise: nil)
                }
                return
            }
            session.open(webSocket: channel, writer: handler)
        }
    }

    /// Closes an upgraded WebSocket that has no session to serve: a close frame saying why
    /// (1008 policy violation), then the connection.
    private static func refuseUpgraded(_ channel: any Channel, reason: String) {
        let frame = WebSocketWire.closeFrame(code: .policyViolation, reason: reason, allocator: channel.allocator)
        channel.writeAndFlush(frame).whenComplete { _ in channel.close(promise: nil) }
    }

    /// The HTTP handlers after the codec, which would take WebSocket bytes for HTTP.
    private static func removeHTTPHandlers(_ channel: any Channel) -> EventLoopFuture<Void> {
        channel.pipeline.removeHandler(name: HTTPRouter.name).flatMap {
            channel.pipeline.removeHandler(name: HTTPRouter.idleHandlerName)
        }
    }
}
