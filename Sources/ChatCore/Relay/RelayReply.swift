import NIOCore

/// The owner's HTTP answer to a relayed GET or POST, which the relay gives the client as is
/// (adding its own CORS headers, as for a local answer).
public struct RelayReply: Sendable, Equatable {
    public var status: UInt16
    public var contentType: String
    public var body: ByteBuffer

    public init(status: UInt16, contentType: String, body: ByteBuffer) {
        self.status = status
        self.contentType = contentType
        self.body = body
    }

    /// An Engine.IO error answer as the Node server sends it: HTTP 400 with
    /// `{"code":N,"message":"…"}` as application/json.
    public static func engineError(code: Int, message: String) -> RelayReply {
        RelayReply(status: 400, contentType: "application/json",
                   body: ByteBuffer(string: #"{"code":\#(code),"message":"\#(message)"}"#))
    }

    /// Engine.IO error 1: the owner has no such session (or no owner side at all).
    public static var sessionUnknown: RelayReply { engineError(code: 1, message: "Session ID unknown") }
    /// Engine.IO error 3: what the owner answers a relayed request over its caps.
    public static var badRequest: RelayReply { engineError(code: 3, message: "Bad request") }
}
