import ChatCore
import EngineIO
import NIOCore
import NIOHTTP1

/// Routes the plain HTTP requests of one connection: Engine.IO long-polling, the chat page,
/// `/healthz` and `/metrics`. Bodies are collected up to a bound; a larger one is refused with
/// 413 and the connection closed, so one client cannot make the node buffer without limit.
/// A polling request for a session another node owns is relayed to that node (docs/RELAY.md)
/// once its body is in, within the same bound.
final class HTTPRouter: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    static let name = "chatmesh-http-router"
    static let idleHandlerName = "chatmesh-http-idle"
    private static let nonEngineBodyLimit = 64 * 1024

    private let server: ServerContext
    private var head: HTTPRequestHead?
    private var body: ByteBuffer?
    private var refused = false
    /// The session whose long-poll this connection holds, told when the connection goes away.
    private var pollingSession: EngineSession?
    /// Cancels the relayed request this connection waits for (its client went away); the
    /// number tells a late answer to an earlier request from the current one.
    private var relayCancel: (@Sendable () -> Void)?
    private var relayRequests: UInt64 = 0
    /// A WebSocket upgrade of another node's session: its stream to the owner, opened while
    /// the handshake was decided, kept here until the pipeline is upgraded.
    var relayedWebSocket: RelayedWebSocket?

    init(server: ServerContext) {
        self.server = server
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
            self.body = nil
            self.refused = false
            if let length = head.headers.first(name: "content-length").flatMap(Int.init), length > bodyLimit(for: head) {
                refuseTooLarge(context, head: head)
            }
        case .body(var chunk):
            guard !refused, let head else { return }
            server.metrics.bytesReceived.increment(by: Int64(chunk.readableBytes))
            if (body?.readableBytes ?? 0) + chunk.readableBytes > bodyLimit(for: head) {
                refuseTooLarge(context, head: head)
                return
            }
            if body == nil { body = chunk } else { body!.writeBuffer(&chunk) }
        case .end:
            guard !refused, let head else { return }
            self.head = nil
            route(context, head: head, body: body ?? ByteBuffer())
            body = nil
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if let session = pollingSession {
            pollingSession = nil
            let channel = context.channel
            session.eventLoop.execute { session.pollConnectionClosed(channel) }
        }
        if let cancel = relayCancel {
            relayCancel = nil
            cancel()
        }
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let idle = event as? IdleStateHandler.IdleStateEvent, idle == .read {
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    private func bodyLimit(for head: HTTPRequestHead) -> Int {
        // The same test the router routes by: `/socket.io?…` is an Engine.IO request too.
        EngineRequest.isEngineURI(head.uri) ? server.engine.maxPayload : Self.nonEngineBodyLimit
    }

    private func refuseTooLarge(_ context: ChannelHandlerContext, head: HTTPRequestHead) {
        refused = true
        server.metrics.countError("payload_too_large")
        let responder = HTTPResponder(channel: context.channel, keepAlive: false, extraHeaders: corsHeaders(head))
        responder.send(HTTPReply(
            status: .payloadTooLarge, contentType: "text/plain; charset=UTF-8",
            text: "payload too large: the limit is \(bodyLimit(for: head)) bytes"
        ))
    }

    private func route(_ context: ChannelHandlerContext, head: HTTPRequestHead, body: ByteBuffer) {
        let responder = HTTPResponder(channel: context.channel, keepAlive: head.isKeepAlive, extraHeaders: [:])
        if let engineRequest = EngineRequest.parse(uri: head.uri) {
            return routeEngine(context, head: head, body: body, request: engineRequest)
        }
        let path = String(head.uri.prefix { $0 != "?" })
        guard head.method == .GET else {
            return responder.send(HTTPReply(status: .methodNotAllowed, contentType: "text/plain; charset=UTF-8", text: "method not allowed"))
        }
        switch path {
        case "/", "/index.html":
            responder.send(StaticContent.page)
        case "/chatmesh.js":
            responder.send(StaticContent.script)
        case "/chatmesh.css":
            responder.send(StaticContent.style)
        case "/healthz":
            responder.send(HealthReport(server: server).reply)
        case "/metrics":
            let text = server.metrics.exposition(connectionCount: server.sessions.count, roomCount: server.hub.roomCount)
            var buffer = context.channel.allocator.buffer(capacity: text.count)
            buffer.writeBytes(text)
            responder.send(HTTPReply(status: .ok, contentType: "text/plain; version=0.0.4; charset=utf-8", body: buffer))
        default:
            responder.send(HTTPReply(status: .notFound, contentType: "text/plain; charset=UTF-8", text: "not found"))
        }
    }

    // MARK: Engine.IO long-polling

    private func corsHeaders(_ head: HTTPRequestHead) -> HTTPHeaders {
        guard let origin = head.headers.first(name: "origin"), server.isOriginAllowed(origin) else { return [:] }
        return ["Access-Control-Allow-Origin": origin, "Access-Control-Allow-Credentials": "true", "Vary": "Origin"]
    }

    private func routeEngine(_ context: ChannelHandlerContext, head: HTTPRequestHead, body: ByteBuffer,
                             request parsed: Result<EngineRequest, EngineErrorCode>) {
        let responder = HTTPResponder(channel: context.channel, keepAlive: head.isKeepAlive, extraHeaders: corsHeaders(head))
        guard server.isOriginAllowed(head.headers.first(name: "origin")) else {
            server.metrics.countError("forbidden_origin")
            return responder.send(.engineError(.forbidden))
        }
        if head.method == .OPTIONS {
            var headers: HTTPHeaders = ["Access-Control-Allow-Methods": "GET, POST", "Access-Control-Max-Age": "86400"]
            if let requested = head.headers.first(name: "access-control-request-headers") {
                headers.add(name: "Access-Control-Allow-Headers", value: requested)
            }
            return responder.send(HTTPReply(status: .noContent, contentType: nil, body: ByteBuffer(), headers: headers))
        }
        let request: EngineRequest
        switch parsed {
        case .failure(let code):
            server.metrics.countError("bad_request")
            return responder.send(.engineError(code))
        case .success(let value):
            request = value
        }
        // A WebSocket request that reaches this handler was not upgraded (no Upgrade header, or
        // refused): answer like the Node server.
        guard request.transport == .polling else {
            if request.sid == nil, server.isDraining { return responder.send(Self.shuttingDown) }
            if request.sid == nil, server.sessions.count >= server.limits.maxConnections {
                server.metrics.countError("max_connections")
                return responder.send(Self.tooManyConnections)
            }
            return responder.send(.engineError(request.sid.map { server.sessions.session($0) == nil ? .unknownSid : .badRequest } ?? .badRequest))
        }
        guard let sid = request.sid else {
            guard head.method == .GET else { return responder.send(.engineError(.badHandshakeMethod)) }
            guard !server.isDraining else { return responder.send(Self.shuttingDown) }
            return openPollingSession(context, request: request, responder: responder)
        }
        guard let session = server.sessions.session(sid) else {
            if let relay = server.relay, head.method == .GET || head.method == .POST, relay.isPeerSession(sid: sid) {
                return relayPoll(context, head: head, sid: sid, body: body, relay: relay, responder: responder)
            }
            return responder.send(.engineError(.unknownSid))
        }
        switch head.method {
        case .GET:
            pollingSession = session
            session.eventLoop.execute { session.handlePollGET(responder) }
        case .POST:
            guard let text = String(validating: body.readableBytesView, as: UTF8.self) else {
                server.metrics.countError("parse_error")
                return responder.send(.engineError(.badRequest))
            }
            session.eventLoop.execute { session.handlePollPOST(text, responder: responder) }
        default:
            responder.send(.engineError(.badRequest))
        }
    }

    /// Sends a polling GET or POST to the node that owns its session and answers the client
    /// with that node's reply (a held long-poll stays held there), or the usual unknown-sid
    /// error when the owner cannot be reached or is lost meanwhile.
    private func relayPoll(_ context: ChannelHandlerContext, head: HTTPRequestHead, sid: String, body: ByteBuffer,
                           relay: any SessionRelay, responder: HTTPResponder) {
        let kind: RelayKind = head.method == .GET ? .get : .post
        let request = RelayedRequest(kind: kind, sid: sid, origin: head.headers.first(name: "origin"),
                                     body: kind == .post ? body : ByteBuffer())
        relayRequests &+= 1
        let number = relayRequests
        let router = NIOLoopBound(self, eventLoop: context.eventLoop)
        let loop = context.eventLoop
        relayCancel = relay.send(request) { result in
            switch result {
            case .success(let reply): responder.send(HTTPReply(relayed: reply))
            case .failure: responder.send(.engineError(.unknownSid))
            }
            loop.execute { router.value.relayAnswered(number) }
        }
    }

    private func relayAnswered(_ number: UInt64) {
        if number == relayRequests { relayCancel = nil }
    }

    /// New sessions while the node drains: 503, which nginx answers by trying the next node.
    static let shuttingDown = HTTPReply(
        status: .serviceUnavailable, contentType: "application/json", text: #"{"code":3,"message":"Server is shutting down"}"#
    )

    /// New sessions beyond `max_connections` (polling, and WebSocket before the upgrade).
    static let tooManyConnections = HTTPReply(
        status: .serviceUnavailable, contentType: "application/json", text: #"{"code":3,"message":"Too many connections"}"#
    )

    private func openPollingSession(_ context: ChannelHandlerContext, request: EngineRequest, responder: HTTPResponder) {
        let session = EngineSession(eventLoop: context.eventLoop, transport: .polling, query: request.query, server: server)
        guard server.sessions.insert(session, limit: server.limits.maxConnections) else {
            server.metrics.countError("max_connections")
            return responder.send(Self.tooManyConnections)
        }
        session.open(webSocket: nil)
        responder.send(HTTPReply(
            status: .ok, contentType: "text/plain; charset=UTF-8",
            text: session.handshake.openText
        ))
    }
}
