import ChatCore
import ClusterConfig
import Foundation
import Logging
import NIOCore
import NIOEmbedded
import NIOHTTP1
import Testing

@testable import ChatServer

/// The chat page the router serves is Sources/ChatServer/Web/* byte for byte (SwiftPM embeds
/// the files in the binary), with the headers that keep it safe under a strict CSP.
struct ChatPageServingTests {
    private static let webDirectory = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Sources/ChatServer/Web")

    private static let securityHeaders = [
        ("Content-Security-Policy", "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; style-src 'self'"),
        ("X-Content-Type-Options", "nosniff"),
        ("Referrer-Policy", "no-referrer"),
        ("Cache-Control", "no-cache"),
    ]

    private struct NoResponseHead: Error {
        var uri: String
        var part: String
    }

    private struct Response {
        var head: HTTPResponseHead
        var body: [UInt8]
    }

    /// One GET through an `HTTPRouter` on an embedded channel, as a browser's request would reach it.
    private func get(_ uri: String) throws -> Response {
        let loop = EmbeddedEventLoop()
        let metrics = ServerMetrics()
        let hub = RoomHub(eventLoops: [loop], fanout: LocalFanout(eventLoop: loop), metrics: metrics.chat)
        let context = ServerContext(
            nodeName: "test", engine: EngineSettings(), limits: LimitSettings(), hub: hub, metrics: metrics,
            logger: Logger(label: "test"), eventLoops: [loop]
        )
        let channel = EmbeddedChannel(handler: HTTPRouter(server: context), loop: loop)
        defer { _ = try? channel.finish() }
        var headers = HTTPHeaders()
        headers.add(name: "Host", value: "localhost")
        try channel.writeInbound(HTTPServerRequestPart.head(HTTPRequestHead(version: .http1_1, method: .GET, uri: uri, headers: headers)))
        try channel.writeInbound(HTTPServerRequestPart.end(nil))

        let first = try #require(try channel.readOutbound(as: HTTPServerResponsePart.self), "no response to \(uri)")
        guard case .head(let head) = first else { throw NoResponseHead(uri: uri, part: "\(first)") }
        var body: [UInt8] = []
        while let part = try channel.readOutbound(as: HTTPServerResponsePart.self) {
            switch part {
            case .head: Issue.record("a second response head for \(uri)")
            case .body(.byteBuffer(let buffer)): body += buffer.readableBytesView
            case .body(.fileRegion): Issue.record("a file region for \(uri): the page is served from memory")
            case .end: return Response(head: head, body: body)
            }
        }
        Issue.record("no response end for \(uri)")
        return Response(head: head, body: body)
    }

    private func file(_ name: String) throws -> [UInt8] {
        Array(try Data(contentsOf: Self.webDirectory.appendingPathComponent(name)))
    }

    @Test(arguments: [
        ("/", "index.html", "text/html; charset=utf-8"),
        ("/index.html", "index.html", "text/html; charset=utf-8"),
        ("/?room=lobby", "index.html", "text/html; charset=utf-8"),
        ("/chatmesh.js", "chatmesh.js", "application/javascript; charset=utf-8"),
        ("/chatmesh.css", "chatmesh.css", "text/css; charset=utf-8"),
    ])
    func eachPagePathServesItsFileByteForByte(uri: String, fileName: String, contentType: String) throws {
        let expected = try file(fileName)
        #expect(!expected.isEmpty)
        let response = try get(uri)
        #expect(response.head.status == .ok)
        // Reported as the first differing offset, not as two arrays of some 30,000 numbers.
        let served = response.body
        let common = min(served.count, expected.count)
        let firstDifference = (0..<common).first { served[$0] != expected[$0] } ?? (served.count == expected.count ? nil : common)
        #expect(
            firstDifference == nil,
            "\(uri) differs from Sources/ChatServer/Web/\(fileName) at byte \(firstDifference ?? 0): served \(served.count) bytes, the file has \(expected.count) (rebuild after editing the file)"
        )
        #expect(response.head.headers["Content-Type"] == [contentType])
        #expect(response.head.headers["Content-Length"] == [String(expected.count)])
        for (name, value) in Self.securityHeaders {
            #expect(response.head.headers[name] == [value], "\(name) on \(uri)")
        }
    }

    @Test func thePageLoadsItsScriptAndStyleFromTheNodeItself() throws {
        // The CSP allows neither inline script nor inline style: the page must reference both files.
        let html = String(decoding: try get("/").body, as: UTF8.self)
        #expect(html.contains(#"<script src="/chatmesh.js" defer></script>"#))
        #expect(html.contains(#"<link rel="stylesheet" href="/chatmesh.css">"#))
    }

    @Test func anUnknownPathIsNotFound() throws {
        let response = try get("/chatmesh.map")
        #expect(response.head.status == .notFound)
    }
}
