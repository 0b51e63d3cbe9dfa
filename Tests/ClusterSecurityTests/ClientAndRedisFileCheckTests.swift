import ClusterConfig
import Testing
@testable import ClusterSecurity
#if canImport(Glibc)
import Glibc
#endif

/// `[node NAME] tls_cert/tls_key` (HTTPS on listen) and `[redis] tls_*`: the same file checks
/// as the mesh, without the node-name rule.
@Suite struct ClientAndRedisFileCheckTests {
    /// `[node a1]` with HTTPS files: tls_cert on line 3, tls_key on line 4.
    static func httpsConfig(_ dir: String) throws -> ClusterConfig {
        try ClusterConfig.parse("[node a1]\nlisten = 127.0.0.1:6443\ntls_cert = \(dir)/https.pem\ntls_key = \(dir)/https-key.pem\n", file: "cluster.conf")
    }

    @Test func aClientCertificateNeedsNoNodeNameButAMatchingKey() throws {
        let dir = try temporaryDirectory()
        let pair = try TestPKI().leaf("chat.example.org", altNames: [.dns("chat.example.org")])
        try writeFile("\(dir)/https.pem", pair.certificate.pem(), mode: 0o644)
        try writeFile("\(dir)/https-key.pem", pair.key.pem())
        #expect(problems(try Self.httpsConfig(dir), nodes: ["a1"]) == [])
        try writeFile("\(dir)/https-key.pem", try PrivateKey.generateP256().pem(), mode: 0o644)
        #expect(problems(try Self.httpsConfig(dir), nodes: ["a1"]) == [
            "cluster.conf:4: tls_key \(dir)/https-key.pem: is readable by group or others (mode 0644); a private key must be private to its owner: chmod 600 \(dir)/https-key.pem",
            "cluster.conf:4: tls_key \(dir)/https-key.pem: does not match the certificate in \(dir)/https.pem (it is the private key of another certificate)",
        ])
    }

    @Test func anExpiredOrMissingClientCertificateIsReportedAtItsLine() throws {
        let dir = try temporaryDirectory()
        let expired = try TestPKI().leaf("a1", notBeforeOffset: -86_400 * 3, notAfterOffset: -60)
        try writeFile("\(dir)/https.pem", expired.certificate.pem(), mode: 0o644)
        try writeFile("\(dir)/https-key.pem", expired.key.pem())
        #expect(problems(try Self.httpsConfig(dir), nodes: ["a1"]).first?.hasPrefix("cluster.conf:3: tls_cert \(dir)/https.pem: the certificate has expired") == true)
        unlink("\(dir)/https.pem")
        #expect(problems(try Self.httpsConfig(dir), nodes: ["a1"]) == ["cluster.conf:3: tls_cert \(dir)/https.pem: cannot read: No such file or directory in [node a1]"])
    }

    @Test func redisTLSFilesAreCheckedAtTheirLines() throws {
        let dir = try temporaryDirectory()
        let pki = try TestPKI()
        let client = try pki.leaf("chatmesh")
        try writeFile("\(dir)/client.pem", client.certificate.pem(), mode: 0o644)
        try writeFile("\(dir)/client-key.pem", client.key.pem())
        let text = "[redis]\nurl = rediss://cache:6380\ntls_ca = \(dir)/ca.pem\ntls_cert = \(dir)/client.pem\ntls_key = \(dir)/client-key.pem\n[node a1]\nlisten = 127.0.0.1:6001\n"
        let config = try ClusterConfig.parse(text, file: "cluster.conf")
        #expect(problems(config, nodes: ["a1"]) == ["cluster.conf:3: tls_ca \(dir)/ca.pem: cannot read: No such file or directory in [redis]"])
        try writeFile("\(dir)/ca.pem", pki.ca.pem(), mode: 0o644)
        try writeFile("\(dir)/client-key.pem", pki.caKey.pem())
        #expect(problems(config, nodes: ["a1"]) == ["cluster.conf:5: tls_key \(dir)/client-key.pem: does not match the certificate in \(dir)/client.pem (it is the private key of another certificate)"])
    }
}
