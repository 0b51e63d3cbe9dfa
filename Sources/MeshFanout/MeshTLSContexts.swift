import ClusterConfig
import NIOSSL

/// The two TLS contexts of one node's mesh, built once per start from `[mesh] tls_*`: the
/// acceptor's and the dialer's. Both present this node's certificate, trust only the cluster
/// CA, speak TLS 1.3 only, and demand the peer's certificate (so an acceptor refuses a dialer
/// without one). NIOSSL checks the chain; which node a certificate names is checked by
/// `MeshPeerIdentity` against the mesh's own idea of the peer, not by hostname rules.
public struct MeshTLSContexts: Sendable {
    public let server: NIOSSLContext
    public let client: NIOSSLContext

    /// Loads the CA, this node's certificate chain and key (`%n` expanded to `node`). A file
    /// that cannot be read or parsed throws, naming the file and its cluster.conf line.
    public init(settings: MeshTLSSettings, node: String) throws {
        let certPath = settings.certFile(for: node)
        let keyPath = settings.keyFile(for: node)
        let trust = try Self.load("tls_ca", settings.caFile, line: settings.caLine) {
            try NIOSSLCertificate.fromPEMFile(settings.caFile)
        }
        let chain = try Self.load("tls_cert", certPath, line: settings.certLine) {
            try NIOSSLCertificate.fromPEMFile(certPath)
        }
        let key = try Self.load("tls_key", keyPath, line: settings.keyLine) {
            try NIOSSLPrivateKey(file: keyPath, format: .pem)
        }
        guard !trust.isEmpty else { throw MeshTLSSetupError(key: "tls_ca", path: settings.caFile, line: settings.caLine, problem: "no certificate in the file") }
        guard !chain.isEmpty else { throw MeshTLSSetupError(key: "tls_cert", path: certPath, line: settings.certLine, problem: "no certificate in the file") }

        var server = TLSConfiguration.makeServerConfiguration(certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
        var client = TLSConfiguration.makeClientConfiguration()
        client.certificateChain = chain.map { .certificate($0) }
        client.privateKey = .privateKey(key)
        Self.restrict(&server, trust: trust)
        Self.restrict(&client, trust: trust)
        do {
            self.server = try NIOSSLContext(configuration: server)
            self.client = try NIOSSLContext(configuration: client)
        } catch {
            throw MeshTLSSetupError(key: "tls_key", path: keyPath, line: settings.keyLine,
                                    problem: "the key and certificate \(certPath) do not make a TLS context: \(error)")
        }
    }

    /// Mutual, chain-verified, TLS 1.3 only, trusting nothing but the cluster CA.
    private static func restrict(_ configuration: inout TLSConfiguration, trust: [NIOSSLCertificate]) {
        configuration.minimumTLSVersion = .tlsv13
        configuration.maximumTLSVersion = .tlsv13
        configuration.trustRoots = .certificates(trust)
        configuration.certificateVerification = .noHostnameVerification
    }

    private static func load<T>(_ key: String, _ path: String, line: Int, _ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch {
            throw MeshTLSSetupError(key: key, path: path, line: line, problem: "\(error)")
        }
    }
}

/// A mesh TLS file that could not be used; the node refuses to start with this message.
public struct MeshTLSSetupError: Error, CustomStringConvertible {
    public var key: String
    public var path: String
    public var line: Int
    public var problem: String

    public var description: String {
        "[mesh] \(key) = \(path) (cluster.conf line \(line)): \(problem)"
    }
}
