import NIOCore
import NIOSSL
import Testing
@testable import RedisFanout

#if canImport(Glibc)
import Glibc
#endif

/// NIOSSL's errors on a `rediss://` connection become one reason an operator can act on.
/// BoringSSL's error stack cannot be built outside NIOSSL, so those cases use the text NIOSSL
/// gives for them (as logged by a node against redis-server, see test_redis_tls.py).
@Suite struct RedisTLSFailureTests {
    func classify(_ error: any Error, host: String = "127.0.0.1", duringHandshake: Bool = true,
                  clientCertificate: Bool = false) -> RedisTLSFailure? {
        RedisTLSFailure.classify(error, host: host, duringHandshake: duringHandshake,
                                 presentsClientCertificate: clientCertificate)
    }

    func classify(text: String, duringHandshake: Bool = true, clientCertificate: Bool = false) -> RedisTLSFailure? {
        RedisTLSFailure.classify(text: text, host: "127.0.0.1", duringHandshake: duringHandshake,
                                 presentsClientCertificate: clientCertificate)
    }

    static let verifyFailed = "handshakeFailed(NIOSSL.BoringSSLError.sslError([Error: 268435581 error:1000007d:SSL routines:"
        + "OPENSSL_internal:CERTIFICATE_VERIFY_FAILED at /src/ssl/handshake.cc:393]))"
    static let certificateRequired = "sslError([Error: 268436572 error:1000045c:SSL routines:OPENSSL_internal:"
        + "TLSV1_ALERT_CERTIFICATE_REQUIRED at /src/ssl/tls_record.cc:592])"
    static let unknownCA = "sslError([Error: 268436552 error:10000418:SSL routines:OPENSSL_internal:TLSV1_ALERT_UNKNOWN_CA at /src/ssl/tls_record.cc:592])"
    static let wrongVersion = "handshakeFailed(NIOSSL.BoringSSLError.sslError([Error: 268435708 error:100000fc:SSL routines:"
        + "OPENSSL_internal:WRONG_VERSION_NUMBER at /src/ssl/tls_record.cc:231]))"

    @Test func aHostTheCertificateDoesNotNameSaysWhichSANItNeeds() throws {
        let dns = try #require(classify(NIOSSLExtraError.failedToValidateHostname, host: "redis.internal"))
        #expect(dns.reason == "hostname_mismatch")
        #expect(dns.message.contains("does not name redis.internal"))
        #expect(dns.message.contains("DNS:redis.internal"))
        let ip = try #require(classify(NIOSSLExtraError.failedToValidateHostname, host: "10.0.0.5"))
        #expect(ip.message.contains("IP:10.0.0.5"))
    }

    @Test func aServerCertificateTheCADidNotSignPointsAtTLSCA() throws {
        let failure = try #require(classify(text: Self.verifyFailed))
        #expect(failure == .certificateVerifyFailed())
        #expect(failure.reason == "certificate_verify_failed")
        #expect(failure.message.hasPrefix("certificate verify failed (is [redis] tls_ca the CA that signed the server's certificate"))
    }

    /// TLS 1.3: the server's alert arrives after the client finished its side of the handshake.
    @Test func aRequiredClientCertificateIsNamedAlsoAfterTheHandshake() {
        for during in [true, false] {
            #expect(classify(text: Self.certificateRequired, duringHandshake: during) == .clientCertificateRequired())
        }
        #expect(RedisTLSFailure.clientCertificateRequired().message.contains("set [redis] tls_cert and tls_key"))
    }

    @Test func aCertificateAlertBlamesOurCertificateOnlyWhenWeSentOne() {
        #expect(classify(text: Self.unknownCA, clientCertificate: true) == .clientCertificateRefused())
        #expect(classify(text: Self.unknownCA, clientCertificate: false) == .clientCertificateRequired())
    }

    @Test func aServerThatDoesNotSpeakTLSIsCalledPlaintext() throws {
        let failure = try #require(classify(text: Self.wrongVersion))
        #expect(failure.reason == "not_tls")
        #expect(failure.message.contains("plaintext Redis port"))
    }

    @Test func aCloseDuringTheHandshakeIsOneButAfterItIsALostConnection() {
        let eof = NIOSSLError.handshakeFailed(.sslError([.eofDuringHandshake]))
        #expect(classify(eof) == .closedDuringHandshake())
        #expect(classify(NIOSSLError.uncleanShutdown, duringHandshake: true) == .closedDuringHandshake())
        #expect(classify(NIOSSLError.uncleanShutdown, duringHandshake: false) == nil)
    }

    @Test func errorsThatAreNotTLSAreLeftToThePlainPath() {
        #expect(classify(IOError(errnoCode: ECONNRESET, reason: "read(descriptor:pointer:size:)")) == nil)
        #expect(classify(ChannelError.eof) == nil)
    }

    @Test func anUnknownTLSErrorDuringTheHandshakeKeepsNIOSSLsText() throws {
        let failure = try #require(classify(NIOSSLError.handshakeFailed(.sslError([]))))
        #expect(failure.reason == "tls_error")
        #expect(failure.message == "TLS error: handshakeFailed(NIOSSL.BoringSSLError.sslError([]))")
        #expect(classify(NIOSSLError.handshakeFailed(.sslError([])), duringHandshake: false) == nil)
    }

    @Test func theTimeoutSaysHowLongAndWhy() {
        let failure = RedisTLSFailure.handshakeTimeout(.seconds(3))
        #expect(failure.reason == "handshake_timeout")
        #expect(failure.message.hasPrefix("no TLS handshake within 3000 ms (is the port a plaintext Redis port?"))
    }

    @Test func everyReasonIsADistinctMetricLabel() {
        let reasons = [RedisTLSFailure.certificateVerifyFailed(), .hostnameMismatch(host: "h"), .notTLS(), .clientCertificateRequired(),
                       .clientCertificateRefused(), .closedDuringHandshake(), .handshakeTimeout(.seconds(1)), .other("x")].map(\.reason)
        #expect(Set(reasons).count == reasons.count)
        #expect(reasons.allSatisfy { $0.allSatisfy { $0 == "_" || ($0.isLetter && $0.isLowercase) } })
    }
}
