import EngineIO
import NIOCore
import NIOHTTP1

/// Routes the plain HTTP requests of one connection: Engine.IO long-polling, the chat page,
/// `/healthz` and `/metrics`. Bodies are collected up to a bound; a larger one is refused with
/// 413 and the connection closed, so one client cannot make the node buffer without limit.
final class HTTPRouter: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    static let name = "chatmesh-http-router"
    static let idleHandlerName = "chatmesh-http-idle"
    private static let nonEngineBodyLimit = 64 * 1024

    private let context: ServerContext
    private var head: HTTPRequestHead?
    private var body: ByteBuffer?
    private var refused = false
    /// The session whose long-poll this connection holds, told when the connection goes away.
    private var pollingSession: EngineSession?

    init(context: ServerContext) {
        self.context = context
    }

    func channelRead(context channelContext: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
            self.body = nil
            self.refused = false
            if let length = head.headers.first(name: "content-length").flatMap(Int.init), length > bodyLimit(for: head) {
                refuseTooLarge(channelContext, head: head)
            }
        case .body(var chunk):
            guard !refused, let head else { return }
            context.metrics.bytesReceived.increment(by: Int64(chunk.readableBytes))
            if (body?.readableBytes ?? 0) + chunk.readableBytes > bodyLimit(for: head) {
                refuseTooLarge(channelContext, head: head)
                return
            }
            if body == nil { body = chunk } else { body!.writeBuffer(&chunk) }
        case .end:
            guard !refused, let head else { return }
            self.head = nil
            route(channelContext, head: head, body: body ?? ByteBuffer())
            body = nil
        }
    }

    func channelInactive(context channelContext: ChannelHandlerContext) {
        if let session = pollingSession {
            pollingSession = nil
            let channel = channelContext.channel
            session.eventLoop.execute { session.pollConnectionClosed(channel) }
        }
        channelContext.fireChannelInactive()
    }

    func userInboundEventTriggered(context channelContext: ChannelHandlerContext, event: Any) {
        if let idle = event as? IdleStateHandler.IdleStateEvent, idle == .read {
            channelContext.close(promise: nil)
            return
        }
        channelContext.fireUserInboundEventTriggered(event)
    }

    private func bodyLimit(for head: HTTPRequestHead) -> Int {
        // The same test the router routes by: `/socket.io?…` is an Engine.IO request too.
        EngineRequest.isEngineURI(head.uri) ? context.engine.maxPayload : Self.nonEngineBodyLimit
    }

    private func refuseTooLarge(_ channelContext: ChannelHandlerContext, head: HTTPRequestHead) {
        refused = true
        context.metrics.countError("payload_too_large")
        let responder = HTTPResponder(channel: channelContext.channel, keepAlive: false, extraHeaders: corsHeaders(head))
        responder.send(HTTPReply(
            status: .payloadTooLarge, contentType: "text/plain; charset=UTF-8",
            text: "payload too large: the limit is \(bodyLimit(for: head)) bytes"
        ))
    }

    private func route(_ channelContext: ChannelHandlerContext, head: HTTPRequestHead, body: ByteBuffer) {
        let responder = HTTPResponder(channel: channelContext.channel, keepAlive: head.isKeepAlive, extraHeaders: [:])
        if let engineRequest = EngineRequest.parse(uri: head.uri) {
            return routeEngine(channelContext, head: head, body: body, request: engineRequest)
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
            responder.send(HealthReport(context: context).reply)
        case "/metrics":
            let text = context.metrics.exposition(connectionCount: context.sessions.count, roomCount: context.hub.roomCount)
            var buffer = channelContext.channel.allocator.buffer(capacity: text.count)
            buffer.writeBytes(text)
            responder.send(HTTPReply(status: .ok, contentType: "text/plain; version=0.0.4; charset=utf-8", body: buffer))
        default:
            responder.send(HTTPReply(status: .notFound, contentType: "text/plain; charset=UTF-8", text: "not found"))
        }
    }

    // MARK: Engine.IO long-polling

    private func corsHeaders(_ head: HTTPRequestHead) -> HTTPHeaders {
        guard let origin = head.headers.first(name: "origin"), context.isOriginAllowed(origin) else { return [:] }
        return ["Access-Control-Allow-Origin": origin, "Access-Control-Allow-Credentials": "true", "Vary": "Origin"]
    }

    private func routeEngine(_ channelContext: ChannelHandlerContext, head: HTTPRequestHead, body: ByteBuffer,
                             request parsed: Result<EngineRequest, EngineErrorCode>) {
        let responder = HTTPResponder(channel: channelContext.channel, keepAlive: head.isKeepAlive, extraHeaders: corsHeaders(head))
        guard context.isOriginAllowed(head.headers.first(name: "origin")) else {
            context.metrics.countError("forbidden_origin")
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
            context.metrics.countError("bad_request")
            return responder.send(.engineError(code))
        case .success(let value):
            request = value
        }
        // A WebSocket request that reaches this handler was not upgraded (no Upgrade header, or
        // refused): answer like the Node server.
        guard request.transport == .polling else {
            if request.sid == nil, context.isDraining { return responder.send(Self.shuttingDown) }
            if request.sid == nil, context.sessions.count >= context.limits.maxConnections {
                context.metrics.countError("max_connections")
                return responder.send(Self.tooManyConnections)
            }
            return responder.send(.engineError(request.sid.map { context.sessions.session($0) == nil ? .unknownSid : .badRequest } ?? .badRequest))
        }
        guard let sid = request.sid else {
            guard head.method == .GET else { return responder.send(.engineError(.badHandshakeMethod)) }
            guard !context.isDraining else { return responder.send(Self.shuttingDown) }
            return openPollingSession(channelContext, request: request, responder: responder)
        }
        guard let session = context.sessions.session(sid) else {
            return responder.send(.engineError(.unknownSid))
        }
        switch head.method {
        case .GET:
            pollingSession = session
            session.eventLoop.execute { session.handlePollGET(responder) }
        case .POST:
            guard let text = String(validating: body.readableBytesView, as: UTF8.self) else {
                context.metrics.countError("parse_error")
                return responder.send(.engineError(.badRequest))
            }
            session.eventLoop.execute { session.handlePollPOST(text, responder: responder) }
        default:
            responder.send(.engineError(.badRequest))
        }
    }

    /// New sessions while the node drains: 503, which nginx answers by trying the next node.
    static let shuttingDown = HTTPReply(
        status: .serviceUnavailable, contentType: "application/json", text: #"{"code":3,"message":"Server is shutting down"}"#
    )

    /// New sessions beyond `max_connections` (polling, and WebSocket before the upgrade).
    static let tooManyConnections = HTTPReply(
        status: .serviceUnavailable, contentType: "application/json", text: #"{"code":3,"message":"Too many connections"}"#
    )

    private func openPollingSession(_ channelContext: ChannelHandlerContext, request: EngineRequest, responder: HTTPResponder) {
        let session = EngineSession(eventLoop: channelContext.eventLoop, transport: .polling, query: request.query, context: context)
        guard context.sessions.insert(session, limit: context.limits.maxConnections) else {
            context.metrics.countError("max_connections")
            return responder.send(Self.tooManyConnections)
        }
        session.open(webSocket: nil)
        responder.send(HTTPReply(
            status: .ok, contentType: "text/plain; charset=UTF-8",
            text: session.handshake.openPacket.encodedText()!
        ))
    }
}
