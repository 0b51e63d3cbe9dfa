#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import ClusterConfig
import NIOCore
import NIOSSL

/// The TLS side of `rediss://`: one client context, built once when the fanout starts (so a
/// bad file stops the node at start with the key and path named, instead of failing every
/// redial), from which each connection gets its own `NIOSSLClientHandler`.
///
/// The server's certificate is verified against `[redis] tls_ca` (the system's CAs when it
/// is not set) and must name the host of the URL: a DNS name as a DNS SAN (it is also sent as
/// SNI), an IP literal as an IP SAN. (NIOSSL also accepts an IP SAN equal to the address it
/// connected to, whatever the name.)
struct RedisTLSClient: Sendable {
    let context: NIOSSLContext
    /// SNI and the name checked in the server's certificate; nil when the URL's host is an IP
    /// literal (SNI may not carry one).
    let serverHostname: String?
    /// A client certificate is configured (`tls_cert` / `tls_key`); changes the advice when
    /// the server refuses the handshake.
    let presentsClientCertificate: Bool

    /// PEM files are small; anything bigger is not the file the config meant.
    static let maxPEMFileSize = 1 << 20

    init(settings: RedisTLSSettings, host: String) throws(RedisTLSSetupError) {
        var configuration = TLSConfiguration.makeClientConfiguration()
        // Redis 6+ speaks TLS 1.2 and 1.3; older versions are not offered.
        configuration.minimumTLSVersion = .tlsv12
        configuration.certificateVerification = .fullVerification
        if let caFile = settings.caFile {
            let line = settings.caLine == 0 ? settings.line : settings.caLine
            let roots = try Self.certificates(key: "tls_ca", path: caFile, line: line)
            configuration.trustRoots = .certificates(roots)
        } else {
            configuration.trustRoots = .default
        }
        switch (settings.certFile, settings.keyFile) {
        case (let certFile?, let keyFile?):
            let certLine = settings.certLine == 0 ? settings.line : settings.certLine
            let keyLine = settings.keyLine == 0 ? settings.line : settings.keyLine
            let chain = try Self.certificates(key: "tls_cert", path: certFile, line: certLine)
            configuration.certificateChain = chain.map { .certificate($0) }
            configuration.privateKey = .privateKey(try Self.privateKey(path: keyFile, line: keyLine))
            presentsClientCertificate = true
        case (nil, nil):
            presentsClientCertificate = false
        default:
            throw RedisTLSSetupError(key: settings.certFile == nil ? "tls_cert" : "tls_key", line: settings.line,
                                     message: "tls_cert and tls_key go together: set both for a client certificate, or neither")
        }
        do {
            context = try NIOSSLContext(configuration: configuration)
        } catch {
            let line = settings.keyLine == 0 ? settings.line : settings.keyLine
            throw RedisTLSSetupError(key: presentsClientCertificate ? "tls_key" : "tls_ca", line: line,
                                     message: presentsClientCertificate
                                         ? "the private key does not match the certificate in tls_cert (\(error))"
                                         : "cannot build a TLS context: \(error)")
        }
        serverHostname = Self.isIPLiteral(host) ? nil : host
    }

    /// A new handler for one connection (handlers hold per-connection state).
    func makeHandler() throws -> NIOSSLClientHandler {
        try NIOSSLClientHandler(context: context, serverHostname: serverHostname)
    }

    /// A handler for a connection to `host`, which may not be the url's (another seed, a
    /// cluster node named by the topology): SNI and the certificate check use that host.
    func makeHandler(host: String) throws -> NIOSSLClientHandler {
        try NIOSSLClientHandler(context: context, serverHostname: Self.isIPLiteral(host) ? nil : host)
    }

    static func isIPLiteral(_ host: String) -> Bool {
        (try? SocketAddress(ipAddress: host, port: 0)) != nil
    }

    // MARK: Files

    private static func certificates(key: String, path: String, line: Int) throws(RedisTLSSetupError) -> [NIOSSLCertificate] {
        let bytes = try readFile(key: key, path: path, line: line)
        let certificates: [NIOSSLCertificate]
        do {
            certificates = try NIOSSLCertificate.fromPEMBytes(bytes)
        } catch {
            throw RedisTLSSetupError(key: key, line: line, message: "\(path) is not a PEM certificate file (\(error))")
        }
        guard !certificates.isEmpty else {
            throw RedisTLSSetupError(key: key, line: line, message: "\(path) holds no PEM certificate (-----BEGIN CERTIFICATE-----)")
        }
        return certificates
    }

    private static func privateKey(path: String, line: Int) throws(RedisTLSSetupError) -> NIOSSLPrivateKey {
        let bytes = try readFile(key: "tls_key", path: path, line: line)
        do {
            return try NIOSSLPrivateKey(bytes: bytes, format: .pem)
        } catch {
            throw RedisTLSSetupError(key: "tls_key", line: line,
                                     message: "\(path) is not an unencrypted PEM private key (\(error))")
        }
    }

    /// The whole file, or an error saying why it cannot be read (NIOSSL's own loaders only
    /// say "failed to load").
    private static func readFile(key: String, path: String, line: Int) throws(RedisTLSSetupError) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            throw RedisTLSSetupError(key: key, line: line, message: "cannot read \(path): \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16384)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                throw RedisTLSSetupError(key: key, line: line, message: "cannot read \(path): \(String(cString: strerror(errno)))")
            }
            if count == 0 { break }
            bytes += chunk[0..<count]
            if bytes.count > maxPEMFileSize {
                throw RedisTLSSetupError(key: key, line: line, message: "\(path) is larger than \(maxPEMFileSize) bytes: not a PEM file")
            }
        }
        return bytes
    }
}

/// A `[redis]` TLS file that cannot be used, named by its key and line in cluster.conf.
public struct RedisTLSSetupError: Error, Equatable, CustomStringConvertible {
    public var key: String
    /// Line in cluster.conf (0 when the settings were built in code).
    public var line: Int
    public var message: String

    public var description: String {
        line > 0 ? "[redis] \(key) (line \(line)): \(message)" : "[redis] \(key): \(message)"
    }
}
