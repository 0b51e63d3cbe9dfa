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

    /// The Engine.IO error answer: `{"code":N,"message":"…"}` as application/json.
    static func engineError(_ code: EngineErrorCode, headers: HTTPHeaders = [:]) -> HTTPReply {
        HTTPReply(status: HTTPResponseStatus(statusCode: code.httpStatus), contentType: "application/json", text: code.jsonBody, headers: headers)
    }
}

/// Writes replies to a channel from any thread; one writer per HTTP request.
struct HTTPResponder: Sendable {
    let channel: any Channel
    let keepAlive: Bool
    let extraHeaders: HTTPHeaders

    func send(_ reply: HTTPReply) {
        let channel = self.channel
        let keepAlive = self.keepAlive
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
