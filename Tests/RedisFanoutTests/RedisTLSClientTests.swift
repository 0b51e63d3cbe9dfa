import ClusterConfig
import Testing
@testable import RedisFanout

/// The TLS context for `rediss://` is built once from the [redis] files; every file that cannot
/// be used is refused at start, naming its key, its line in cluster.conf and the path.
@Suite struct RedisTLSClientTests {
    func setupError(_ settings: RedisTLSSettings, host: String = "127.0.0.1") -> RedisTLSSetupError? {
        do {
            _ = try RedisTLSClient(settings: settings, host: host)
            return nil
        } catch {
            return error
        }
    }

    @Test func aMissingCAFileIsNamedWithItsKeyLineAndTheSystemError() {
        let error = setupError(RedisTLSSettings(caFile: "/nonexistent/ca.pem", line: 3, caLine: 7))
        #expect(error == RedisTLSSetupError(key: "tls_ca", line: 7,
                                            message: "cannot read /nonexistent/ca.pem: No such file or directory"))
        #expect(error?.description == "[redis] tls_ca (line 7): cannot read /nonexistent/ca.pem: No such file or directory")
    }

    @Test func aCAFileWithoutACertificateIsRefused() {
        let files = TemporaryFiles()
        defer { files.remove() }
        let path = files.write("notes.txt", "not a certificate\n")
        let error = setupError(RedisTLSSettings(caFile: path, caLine: 4))
        #expect(error?.key == "tls_ca")
        #expect(error?.line == 4)
        #expect(error?.message.hasPrefix(path) == true)
        #expect(error?.message.contains("PEM certificate") == true)
    }

    @Test func aKeyFileHoldingACertificateIsRefused() {
        let files = TemporaryFiles()
        defer { files.remove() }
        let cert = files.write("client.pem", RedisTLSFixtures.clientCertificatePEM)
        let error = setupError(RedisTLSSettings(certFile: cert, keyFile: cert, certLine: 5, keyLine: 6))
        #expect(error?.key == "tls_key")
        #expect(error?.line == 6)
        #expect(error?.message.hasPrefix("\(cert) is not an unencrypted PEM private key") == true)
    }

    @Test func aCertificateWithoutItsKeyIsRefused() {
        let files = TemporaryFiles()
        defer { files.remove() }
        let cert = files.write("client.pem", RedisTLSFixtures.clientCertificatePEM)
        let error = setupError(RedisTLSSettings(certFile: cert, line: 2, certLine: 5))
        #expect(error == RedisTLSSetupError(key: "tls_key", line: 2,
                                            message: "tls_cert and tls_key go together: set both for a client certificate, or neither"))
    }

    @Test func aKeyThatDoesNotMatchItsCertificateIsRefused() {
        let files = TemporaryFiles()
        defer { files.remove() }
        let cert = files.write("client.pem", RedisTLSFixtures.clientCertificatePEM)
        let key = files.write("other-key.pem", RedisTLSFixtures.unrelatedKeyPEM)
        let error = setupError(RedisTLSSettings(certFile: cert, keyFile: key, certLine: 5, keyLine: 6))
        #expect(error?.key == "tls_key")
        #expect(error?.line == 6)
        #expect(error?.message.hasPrefix("the private key does not match the certificate in tls_cert") == true)
    }

    @Test func aCAAndAMatchingClientCertificateMakeAContextThatPresentsIt() throws {
        let files = TemporaryFiles()
        defer { files.remove() }
        let settings = RedisTLSSettings(
            caFile: files.write("ca.pem", RedisTLSFixtures.caPEM),
            certFile: files.write("client.pem", RedisTLSFixtures.clientCertificatePEM),
            keyFile: files.write("client-key.pem", RedisTLSFixtures.clientKeyPEM)
        )
        let client = try RedisTLSClient(settings: settings, host: "redis.internal")
        #expect(client.presentsClientCertificate)
        #expect(client.serverHostname == "redis.internal")
        _ = try client.makeHandler()
    }

    @Test func withoutFilesTheSystemTrustStoreIsUsedAndNoCertificatePresented() throws {
        let client = try RedisTLSClient(settings: RedisTLSSettings(), host: "redis.internal")
        #expect(!client.presentsClientCertificate)
    }

    /// SNI may not carry an IP address; the certificate's IP SAN is checked against it instead.
    @Test(arguments: [("127.0.0.1", nil), ("::1", nil), ("fd00::5", nil), ("redis.internal", "redis.internal"), ("localhost", "localhost")])
    func theServerNameIsTheURLHostUnlessItIsAnIPLiteral(host: String, expected: String?) throws {
        let client = try RedisTLSClient(settings: RedisTLSSettings(), host: host)
        #expect(client.serverHostname == expected)
        _ = try client.makeHandler()
    }
}
