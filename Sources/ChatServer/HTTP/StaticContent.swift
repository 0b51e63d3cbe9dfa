import NIOCore
import NIOHTTP1

/// The chat page's files as ready replies, with headers that keep the page safe even if a
/// message ever slipped into markup: no inline scripts, same-origin connections only.
///
/// The bodies are Sources/ChatServer/Web/{index.html,chatmesh.js,chatmesh.css}, which SwiftPM
/// embeds in the binary (`.embedInCode` in Package.swift) as `PackageResources`. Each reply is
/// built once, on first use; a request only copies the reply (the ByteBuffer is shared, not copied).
enum StaticContent {
    private static let securityHeaders: HTTPHeaders = [
        "Content-Security-Policy": "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; style-src 'self'",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-cache",
    ]

    static let page = reply(PackageResources.index_html, contentType: "text/html; charset=utf-8")
    static let script = reply(PackageResources.chatmesh_js, contentType: "application/javascript; charset=utf-8")
    static let style = reply(PackageResources.chatmesh_css, contentType: "text/css; charset=utf-8")

    private static func reply(_ bytes: [UInt8], contentType: String) -> HTTPReply {
        HTTPReply(status: .ok, contentType: contentType, body: ByteBuffer(bytes: bytes), headers: securityHeaders)
    }
}
