import ClusterConfig
import NIOCore
import NIOSSL
#if canImport(Glibc)
import Glibc
#endif

/// HTTPS and WSS on a node's `listen` (`[node NAME] tls_cert` / `tls_key`), for hosts with no
/// proxy in front. The certificate and key are read once, when the node starts, into one
/// context shared by every connection; each accepted connection then gets a TLS server handler
/// below everything else, so HTTP, long-polling, the WebSocket upgrade, the page, `/healthz`
/// and `/metrics` run unchanged on top of it.
///
/// TLS 1.2 and 1.3 (what browsers and proxies speak), ALPN `http/1.1`: the node serves no
/// HTTP/2, so a client offering `h2` learns at once to stay on HTTP/1.1.
struct ClientTLSContext: Sendable {
    let sslContext: NIOSSLContext

    init(settings: ClientTLSSettings) throws(ClientTLSSetupError) {
        // NIOSSL says only "failed to load"; the system says why a file cannot be opened.
        if let reason = Self.unreadable(settings.certFile) {
            throw ClientTLSSetupError(line: settings.certLine, message: "tls_cert \(settings.certFile): \(reason)")
        }
        if let reason = Self.unreadable(settings.keyFile) {
            throw ClientTLSSetupError(line: settings.keyLine, message: "tls_key \(settings.keyFile): \(reason)")
        }
        let chain: [NIOSSLCertificate]
        do {
            chain = try NIOSSLCertificate.fromPEMFile(settings.certFile)
        } catch {
            throw ClientTLSSetupError(line: settings.certLine, message: "tls_cert \(settings.certFile): cannot read a PEM certificate (\(error))")
        }
        guard !chain.isEmpty else {
            throw ClientTLSSetupError(line: settings.certLine, message: "tls_cert \(settings.certFile): no certificate in the file")
        }
        let key: NIOSSLPrivateKey
        do {
            key = try NIOSSLPrivateKey(file: settings.keyFile, format: .pem)
        } catch {
            throw ClientTLSSetupError(line: settings.keyLine, message: "tls_key \(settings.keyFile): cannot read a PEM private key (\(error))")
        }
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key)
        )
        configuration.minimumTLSVersion = .tlsv12
        configuration.applicationProtocols = ["http/1.1"]
        // Closing a connection waits this long for the client's close_notify (NIOSSL's default
        // is 5 s). Nothing the server still needs comes after its own close_notify, and many
        // clients (python's requests, curl) just drop the socket: with 5 s, a draining node
        // with an idle keep-alive connection left took 5 s more to stop.
        configuration.shutdownTimeout = .milliseconds(500)
        do {
            sslContext = try NIOSSLContext(configuration: configuration)
        } catch {
            // BoringSSL refuses a key that is not the certificate's at this point.
            throw ClientTLSSetupError(
                line: settings.keyLine,
                message: "tls_key \(settings.keyFile) does not fit tls_cert \(settings.certFile) (\(error))"
            )
        }
    }

    /// Why `path` cannot be opened for reading (strerror), or nil if it can.
    private static func unreadable(_ path: String) -> String? {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { return String(cString: strerror(errno)) }
        close(fd)
        return nil
    }

    /// Puts TLS first in an accepted client connection (on its event loop, from the child
    /// channel initializer), with the handler that ends the TLS layer's errors right above it.
    func addHandlers(to channel: any Channel, server: ServerContext) throws {
        try channel.pipeline.syncOperations.addHandlers(
            NIOSSLServerHandler(context: sslContext),
            ClientTLSErrorHandler(metrics: server.metrics, logger: server.logger)
        )
    }
}

/// A client TLS certificate or key that cannot be used; `line` is the line of `tls_cert` or
/// `tls_key` in cluster.conf, so `serve` can say `file:line`.
public struct ClientTLSSetupError: Error, CustomStringConvertible {
    public let line: Int
    public let message: String

    public var description: String { "line \(line): \(message)" }
}
