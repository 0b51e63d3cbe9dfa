import ChatCore
import ClusterConfig
import Logging
import NIOCore
import NIOEmbedded
import NIOSSL
import NIOTLS
import Synchronization
import Testing
@testable import RedisFanout

/// What a node does with TLS on its Redis connections (embedded channels standing in for the
/// network, the NIOSSL handler left out): the setup waits for the handshake, which has a
/// deadline; a TLS failure closes the connection, shows in /healthz and is logged once per
/// reason however often the node redials, until a connection succeeds.
@Suite struct RedisTLSReportingTests {
    /// Every line logged, as "level message".
    final class LogLines: Sendable {
        let lines = Mutex<[String]>([])
        var all: [String] { lines.withLock { $0 } }
        func count(_ prefix: String) -> Int { all.filter { $0.hasPrefix(prefix) }.count }
    }

    struct RecordingLogHandler: LogHandler {
        let sink: LogLines
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            sink.lines.withLock { $0.append("\(event.level) \(event.message)") }
        }
    }

    let loop = EmbeddedEventLoop()
    let log = LogLines()

    func makeFanout() -> RedisFanout {
        let sink = log
        return RedisFanout(url: RedisURL(password: "pw", host: "127.0.0.1", tls: true), tls: RedisTLSSettings(), channelPrefix: "",
                           bufferMessages: 100, bufferTime: .seconds(10), eventLoop: loop,
                           logger: Logger(label: "redis-tls-test", factory: { _ in RecordingLogHandler(sink: sink) }))
    }

    /// A connected link of `role` that waits for TLS, as the fanout would make it.
    func connectedLink(_ fanout: RedisFanout, _ role: RedisLink.Role = .subscriber) throws -> EmbeddedChannel {
        let link = RedisLink(role: role, owner: fanout, setup: [["AUTH", "pw"]], overTLS: true)
        let channel = EmbeddedChannel(handler: link, loop: loop)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 6380)).wait()
        return channel
    }

    @Test func theSetupWaitsForTheHandshake() throws {
        let fanout = makeFanout()
        let channel = try connectedLink(fanout)
        #expect(try channel.readOutbound(as: ByteBuffer.self) == nil)
        channel.pipeline.fireUserInboundEventTriggered(TLSUserEvent.handshakeCompleted(negotiatedProtocol: nil))
        let written = try #require(try channel.readOutbound(as: ByteBuffer.self))
        #expect(String(buffer: written) == "*2\r\n$4\r\nAUTH\r\n$2\r\npw\r\n")
        loop.advanceTime(by: RedisLink.tlsHandshakeLimit)
        #expect(channel.isActive)
    }

    @Test func aHandshakeThatNeverEndsIsCutAtTheDeadline() throws {
        let fanout = makeFanout()
        let channel = try connectedLink(fanout)
        loop.advanceTime(by: RedisLink.tlsHandshakeLimit - .milliseconds(1))
        #expect(channel.isActive)
        loop.advanceTime(by: .milliseconds(1))
        #expect(!channel.isActive)
        #expect(!fanout.health.isReady)
        #expect(fanout.health.details.contains { $0.0 == "redis_tls_error" && $0.1 == .string("handshake_timeout") })
        #expect(log.count("error redis TLS handshake failed: no TLS handshake within 3000 ms") == 1)
        #expect(log.count("warning redis connection lost") == 0)
    }

    @Test func eachReasonIsLoggedOnceUntilAConnectionSucceeds() throws {
        let fanout = makeFanout()
        for _ in 0..<3 {
            let channel = try connectedLink(fanout)
            channel.pipeline.fireErrorCaught(NIOSSLExtraError.failedToValidateHostname)
            #expect(!channel.isActive)
        }
        #expect(log.count("error redis TLS handshake failed: the server's certificate does not name 127.0.0.1") == 1)
        #expect(log.count("debug redis TLS handshake failed again") == 2)
        #expect(fanout.health.details.contains { $0.0 == "redis_tls_error" && $0.1 == .string("hostname_mismatch") })

        // Another reason is news.
        let other = try connectedLink(fanout)
        other.pipeline.fireErrorCaught(NIOSSLError.handshakeFailed(.sslError([.eofDuringHandshake])))
        #expect(log.count("error redis TLS handshake failed: the server closed the connection during the TLS handshake") == 1)

        // A connection that gets through: up, no TLS error shown; a later failure is news again.
        let good = try connectedLink(fanout)
        good.pipeline.fireUserInboundEventTriggered(TLSUserEvent.handshakeCompleted(negotiatedProtocol: nil))
        try good.writeInbound(ByteBuffer(string: "+OK\r\n"))
        #expect(fanout.health.isReady)
        #expect(!fanout.health.details.contains { $0.0 == "redis_tls_error" })
        #expect(log.count("info redis TLS connection established") == 1)
        _ = try good.close().wait()
        let again = try connectedLink(fanout)
        again.pipeline.fireErrorCaught(NIOSSLExtraError.failedToValidateHostname)
        #expect(log.count("error redis TLS handshake failed: the server's certificate does not name 127.0.0.1") == 2)
        #expect(log.count("warning redis connection lost") == 1) // the one that had been up
    }

    @Test func onlyTheFirstErrorOfAConnectionCounts() throws {
        let fanout = makeFanout()
        let channel = try connectedLink(fanout)
        channel.pipeline.fireErrorCaught(NIOSSLError.handshakeFailed(.sslError([.eofDuringHandshake])))
        channel.pipeline.fireErrorCaught(NIOSSLError.uncleanShutdown)
        #expect(log.count("error redis TLS handshake failed") + log.count("debug redis TLS handshake failed") == 1)
    }

    @Test func aCAFileThatCannotBeReadStopsTheStart() {
        let fanout = RedisFanout(url: RedisURL(host: "127.0.0.1", tls: true), tls: RedisTLSSettings(caFile: "/nonexistent/ca.pem", caLine: 9),
                                 channelPrefix: "", bufferMessages: 100, bufferTime: .seconds(10), eventLoop: loop,
                                 logger: Logger(label: "redis-tls-test", factory: { _ in SwiftLogNoOpLogHandler() }))
        #expect(throws: RedisTLSSetupError(key: "tls_ca", line: 9, message: "cannot read /nonexistent/ca.pem: No such file or directory")) {
            try fanout.start(FanoutStartContext())
        }
    }
}
