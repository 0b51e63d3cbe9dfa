import ChatCore
import EngineIO
import NIOCore
import NIOHTTP1

/// A complete HTTP response, written as head + body + end on the connection's own loop.
struct HTTPReply: Sendable {
    var status: HTTPResponseStatus
    var headers: HTTPHeaders
    var body: ByteBuffer

    init(status: HTTPResponseStatus, contentType: String?, body: ByteBuffer, headers: HTTPHeaders = [:]) {
        self.status = status
        self.headers = headers
        if let contentType { self.headers.replaceOrAdd(name: "Content-Type", value: contentType) }
        self.body = body
    }

    init(status: HTTPResponseStatus, contentType: String?, text: String, headers: HTTPHeaders = [:]) {
        self.init(status: status, contentType: contentType, body: ByteBuffer(string: text), headers: headers)
    }

    /// The owner's answer to a relayed request, as the relay gives it to its client.
    init(relayed reply: RelayReply) {
        self.init(
            status: HTTPResponseStatus(statusCode: Int(reply.status)),
            contentType: reply.contentType.isEmpty ? nil : reply.contentType, body: reply.body
        )
    }

    /// The Engine.IO error answer: `{"code":N,"message":"…"}` as application/json.
    static func engineError(_ code: EngineErrorCode, headers: HTTPHeaders = [:]) -> HTTPReply {
        HTTPReply(status: HTTPResponseStatus(statusCode: code.httpStatus), contentType: "application/json", text: code.jsonBody, headers: headers)
    }
}

/// Answers one HTTP request from any thread: on the client's connection, or, for a request
/// another node relayed here (docs/RELAY.md), through the mesh to that node, which gives the
/// client the status, content type and body (with its own CORS headers).
struct HTTPResponder: Sendable {
    enum Destination: Sendable {
        /// The client's own connection, on this node.
        case connection(any Channel, keepAlive: Bool)
        /// A relayed GET/POST: the reply goes back over the mesh.
        case relay(RelayExchange)
    }

    let destination: Destination
    let extraHeaders: HTTPHeaders

    init(channel: any Channel, keepAlive: Bool, extraHeaders: HTTPHeaders) {
        self.destination = .connection(channel, keepAlive: keepAlive)
        self.extraHeaders = extraHeaders
    }

    /// A relayed request's responder: no headers of its own (the relay adds its CORS headers).
    init(exchange: RelayExchange) {
        self.destination = .relay(exchange)
        self.extraHeaders = [:]
    }

    func send(_ reply: HTTPReply) {
        switch destination {
        case .connection(let channel, let keepAlive):
            Self.write(reply, extraHeaders: extraHeaders, to: channel, keepAlive: keepAlive)
        case .relay(let exchange):
            exchange.reply(RelayReply(
                status: UInt16(reply.status.code), contentType: reply.headers.first(name: "Content-Type") ?? "", body: reply.body
            ))
        }
    }

    /// Whether this answers a request that came on `channel` (its connection closing ends it).
    func isOn(_ channel: any Channel) -> Bool {
        guard case .connection(let own, _) = destination else { return false }
        return own === channel
    }

    /// Whether this answers the relayed request `exchange`.
    func answers(_ exchange: RelayExchange) -> Bool {
        guard case .relay(let own) = destination else { return false }
        return own === exchange
    }

    private static func write(_ reply: HTTPReply, extraHeaders: HTTPHeaders, to channel: any Channel, keepAlive: Bool) {
        var headers = extraHeaders
        for (name, value) in reply.headers { headers.replaceOrAdd(name: name, value: value) }
        headers.replaceOrAdd(name: "Content-Length", value: String(reply.body.readableBytes))
        if !keepAlive { headers.replaceOrAdd(name: "Connection", value: "close") }
        let head = HTTPResponseHead(version: .http1_1, status: reply.status, headers: headers)
        let body = reply.body
        let write: @Sendable () -> Void = {
            channel.write(HTTPServerResponsePart.head(head), promise: nil)
            channel.write(HTTPServerResponsePart.body(.byteBuffer(body)), promise: nil)
            let done = channel.writeAndFlush(HTTPServerResponsePart.end(nil))
            if !keepAlive { done.whenComplete { _ in channel.close(promise: nil) } }
        }
        if channel.eventLoop.inEventLoop { write() } else { channel.eventLoop.execute(write) }
    }
}
