import NIOCore
import NIOSSL
import Testing
@testable import MeshFanout

/// The pure rules of mesh TLS: which bytes betray the other transport, which certificate names
/// which node, and which pipeline errors are refusals with which `reason` label.
@Suite struct MeshTLSRulesTests {
    // MARK: First bytes

    @Test func aTLSHandshakeRecordIsRecognisedFromTwoBytes() {
        #expect(MeshTransportSniffer.classify([0x16, 0x03]) == .tls)
        #expect(MeshTransportSniffer.classify([0x16, 0x03, 0x01, 0x02, 0x00]) == .tls)
        #expect(MeshTransportSniffer.classify([0x16]) == nil)
        #expect(MeshTransportSniffer.classify([0x16, 0x04]) == .other)
    }

    @Test func aPlaintextHelloIsRecognisedFromItsLengthAndType() {
        let hello = wire(.hello(MeshHello(node: "a1", epoch: 7, nonce: nonceA)))
        #expect(MeshTransportSniffer.classify(Array(hello.prefix(5))) == .plainMesh)
        #expect(MeshTransportSniffer.classify(hello) == .plainMesh)
        for length in 1..<5 { #expect(MeshTransportSniffer.classify(Array(hello.prefix(length))) == nil) }
        // Another frame type first, or a length of 64 KiB and more, is not a mesh peer's HELLO.
        #expect(MeshTransportSniffer.classify(Array(wire(.ping(1)).prefix(5))) == .other)
        #expect(MeshTransportSniffer.classify([0x00, 0x01, 0x00, 0x00, 0x01]) == .other)
    }

    @Test func anythingElseIsLeftToTheNextHandler() {
        #expect(MeshTransportSniffer.classify([]) == nil)
        #expect(MeshTransportSniffer.classify(Array("GET / HTTP/1.1\r\n".utf8)) == .other)
        #expect(MeshTransportSniffer.classify([0xFF, 0xFF, 0xFF, 0xF0, 0x06]) == .other)
    }

    // MARK: Names

    @Test func aCertificateNamesTheNodesInItsDNSAlternativeNames() throws {
        let a2 = try NIOSSLCertificate(bytes: Array(TLSTestCertificates.files["a2"]!.utf8), format: .pem)
        #expect(MeshPeerIdentity.dnsNames(of: a2) == ["a2"]) // the IP SAN is not a name
        #expect(MeshPeerIdentity.problem(certificate: a2, node: "a2") == nil)
        #expect(MeshPeerIdentity.problem(certificate: a2, node: "a3") == "peer certificate names 'a2', not node 'a3'")
        #expect(MeshPeerIdentity.problem(certificate: nil, node: "a2") == "peer presented no certificate")
    }

    @Test func namesMatchExactlyWithoutWildcardsOrCaseFolding() {
        #expect(MeshPeerIdentity.problem(names: ["a1", "a2"], node: "a2") == nil)
        #expect(MeshPeerIdentity.problem(names: ["*"], node: "a2") != nil)
        #expect(MeshPeerIdentity.problem(names: ["A2"], node: "a2") != nil)
        #expect(MeshPeerIdentity.problem(names: ["a2.example"], node: "a2") != nil)
        #expect(MeshPeerIdentity.problem(names: [], node: "a2") == "peer certificate names no DNS name, not node 'a2'")
    }

    // MARK: Reasons

    @Test func everyFailedTLSHandshakeIsCountedAsTLSHandshakeFailed() {
        let causes: [NIOSSLError] = [
            .handshakeFailed(.sslError([])), .handshakeFailed(.syscallError), .noCertificateToValidate,
            .unableToValidateCertificate,
        ]
        for cause in causes {
            #expect(MeshLinkRefusal(error: cause)?.metricReason == "tls_handshake_failed", "\(cause)")
        }
        #expect(MeshLinkRefusal(error: NIOSSLError.handshakeFailed(.syscallError))?.reason.hasPrefix("TLS handshake failed") == true)
    }

    @Test func refusalsRaisedInThePipelineKeepTheirReason() {
        #expect(MeshLinkRefusal(error: MeshLinkRefusal.tlsRequired)?.metricReason == "tls_required")
        #expect(MeshLinkRefusal(error: MeshLinkRefusal.tlsNotEnabled)?.metricReason == "tls_not_enabled")
        #expect(MeshLinkRefusal.nameMismatch("x").metricReason == "tls_peer_name_mismatch")
    }

    @Test func errorsOfALinkThatEndsAreNoRefusal() {
        #expect(MeshLinkRefusal(error: NIOSSLError.uncleanShutdown) == nil)
        #expect(MeshLinkRefusal(error: ChannelError.ioOnClosedChannel) == nil)
        #expect(MeshLinkRefusal(error: MeshFrameError.emptyFrame) == nil)
    }
}
