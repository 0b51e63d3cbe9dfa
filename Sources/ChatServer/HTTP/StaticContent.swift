import NIOHTTP1

/// The chat page's files as ready replies, with headers that keep the page safe even if a
/// message ever slipped into markup: no inline scripts, same-origin connections only.
enum StaticContent {
    private static let securityHeaders: HTTPHeaders = [
        "Content-Security-Policy": "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; style-src 'self'",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-cache",
    ]

    static let page = HTTPReply(status: .ok, contentType: "text/html; charset=utf-8", text: ChatPage.html, headers: securityHeaders)
    static let script = HTTPReply(status: .ok, contentType: "application/javascript; charset=utf-8", text: ChatPage.script, headers: securityHeaders)
    static let style = HTTPReply(status: .ok, contentType: "text/css; charset=utf-8", text: ChatPage.style, headers: securityHeaders)
}
