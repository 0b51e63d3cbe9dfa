import ClusterConfig
import Testing
@testable import ClusterSecurity
#if canImport(Glibc)
import Glibc
#endif

/// Every problem with a TLS mesh file is reported at the cluster.conf line that names the file.
@Suite struct MeshFileCheckTests {
    @Test func goodFilesPassEveryCheck() throws {
        let dir = try temporaryDirectory()
        try TestPKI().writeMesh(into: dir, names: ["a1", "a2"])
        #expect(problems(try meshConfig(dir)) == [])
    }

    @Test func anUnreadableCAIsReportedAtTheTLSCALine() throws {
        let dir = try temporaryDirectory()
        try TestPKI().writeMesh(into: dir, names: ["a1", "a2"])
        unlink("\(dir)/ca.pem")
        #expect(problems(try meshConfig(dir)) == ["cluster.conf:3: tls_ca \(dir)/ca.pem: cannot read: No such file or directory"])
    }

    @Test func aKeyWhereTheCertificateShouldBeIsNotAPEMCertificate() throws {
        let dir = try temporaryDirectory()
        let pki = try TestPKI()
        try pki.writeMesh(into: dir, names: ["a1", "a2"])
        try writeFile("\(dir)/a2.pem", try pki.leaf("a2").key.pem(), mode: 0o644)
        #expect(problems(try meshConfig(dir)) == ["cluster.conf:4: tls_cert \(dir)/a2.pem: not a PEM certificate (found 'PRIVATE KEY') (node a2)"])
    }

    @Test func aCertificateWhereTheKeyShouldBeIsNotAPEMPrivateKey() throws {
        let dir = try temporaryDirectory()
        let pki = try TestPKI()
        try pki.writeMesh(into: dir, names: ["a1", "a2"])
        try writeFile("\(dir)/a1-key.pem", pki.ca.pem())
        let found = problems(try meshConfig(dir))
        #expect(found.count == 1)
        #expect(found.first?.hasPrefix("cluster.conf:5: tls_key \(dir)/a1-key.pem: not a PEM private key (found 'CERTIFICATE'") == true)
    }

    @Test func aDirectoryOrFIFOIsNotARegularFileAndTheKeyIsStillChecked() throws {
        let dir = try temporaryDirectory()
        try TestPKI().writeMesh(into: dir, names: ["a1", "a2"])
        unlink("\(dir)/a1.pem")
        try #require(mkfifo("\(dir)/a1.pem", 0o644) == 0)  // opened without blocking
        unlink("\(dir)/a1-key.pem")
        try #require(mkdir("\(dir)/a1-key.pem", 0o700) == 0)
        #expect(problems(try meshConfig(dir)) == [
            "cluster.conf:4: tls_cert \(dir)/a1.pem: not a regular file (node a1)",
            "cluster.conf:5: tls_key \(dir)/a1-key.pem: not a regular file",
        ])
    }

    @Test func anEmptyFileIsNamedAsEmpty() throws {
        let dir = try temporaryDirectory()
        try TestPKI().writeMesh(into: dir, names: ["a1", "a2"])
        try writeFile("\(dir)/ca.pem", "", mode: 0o644)
        #expect(problems(try meshConfig(dir)) == ["cluster.conf:3: tls_ca \(dir)/ca.pem: not a PEM certificate (the file is empty)"])
    }

    @Test func aKeyThatDoesNotMatchItsCertificateIsReportedAtTheKeyLine() throws {
        let dir = try temporaryDirectory()
        let pki = try TestPKI()
        try pki.writeMesh(into: dir, names: ["a1", "a2"])
        try writeFile("\(dir)/a2-key.pem", try PrivateKey.generateP256().pem())
        #expect(problems(try meshConfig(dir)) == ["cluster.conf:5: tls_key \(dir)/a2-key.pem: does not match the certificate in \(dir)/a2.pem (it is the private key of another certificate)"])
    }

    @Test func aCertificateFromAnotherCAIsReportedAtTheCertLine() throws {
        let dir = try temporaryDirectory()
        let pki = try TestPKI()
        try pki.writeMesh(into: dir, names: ["a1", "a2"])
        let stranger = try pki.leaf("a1", signer: try TestPKI())
        try writeFile("\(dir)/a1.pem", stranger.certificate.pem(), mode: 0o644)
        try writeFile("\(dir)/a1-key.pem", stranger.key.pem())
        #expect(problems(try meshConfig(dir)) == ["cluster.conf:4: tls_cert \(dir)/a1.pem: is not signed by the cluster CA in tls_ca \(dir)/ca.pem (unable to get local issuer certificate)"])
    }

    @Test func anExpiredCertificateIsReportedAtTheCertLine() throws {
        let dir = try temporaryDirectory()
        let pki = try TestPKI()
        try pki.writeMesh(into: dir, names: ["a1", "a2"])
        let expired = try pki.leaf("a2", notBeforeOffset: -86_400 * 10, notAfterOffset: -86_400)
        try writeFile("\(dir)/a2.pem", expired.certificate.pem(), mode: 0o644)
        try writeFile("\(dir)/a2-key.pem", expired.key.pem())
        let found = problems(try meshConfig(dir))
        #expect(found.count == 1)
        #expect(found.first?.hasPrefix("cluster.conf:4: tls_cert \(dir)/a2.pem: the certificate has expired (valid until ") == true)
    }

    @Test func aNotYetValidCertificateIsReportedAtTheCertLine() throws {
        let dir = try temporaryDirectory()
        let pki = try TestPKI()
        try pki.writeMesh(into: dir, names: ["a1", "a2"])
        let early = try pki.leaf("a1", notBeforeOffset: 86_400, notAfterOffset: 86_400 * 2)
        try writeFile("\(dir)/a1.pem", early.certificate.pem(), mode: 0o644)
        try writeFile("\(dir)/a1-key.pem", early.key.pem())
        let found = problems(try meshConfig(dir))
        #expect(found.count == 1)
        #expect(found.first?.hasPrefix("cluster.conf:4: tls_cert \(dir)/a1.pem: the certificate is not valid yet (valid from ") == true)
    }

    @Test func aCertificateNamingAnotherNodeIsReportedAtTheCertLine() throws {
        let dir = try temporaryDirectory()
        let pki = try TestPKI()
        try pki.writeMesh(into: dir, names: ["a1", "a2"])
        let impostor = try pki.leaf("a1")  // a valid a1 certificate installed as a2's
        try writeFile("\(dir)/a2.pem", impostor.certificate.pem(), mode: 0o644)
        try writeFile("\(dir)/a2-key.pem", impostor.key.pem())
        #expect(problems(try meshConfig(dir)) == ["cluster.conf:4: tls_cert \(dir)/a2.pem: does not name node 'a2': a mesh certificate needs subjectAltName DNS:a2 (its subject is O=chatmesh, CN=a1); `chatmesh gen-certs` makes such certificates"])
    }

    @Test func aCommonNameAloneDoesNotNameTheNode() throws {
        let dir = try temporaryDirectory()
        let pki = try TestPKI()
        try pki.writeMesh(into: dir, names: ["a1", "a2"])
        let noSAN = try pki.leaf("a1", altNames: [.ip("127.0.0.1")])
        try writeFile("\(dir)/a1.pem", noSAN.certificate.pem(), mode: 0o644)
        try writeFile("\(dir)/a1-key.pem", noSAN.key.pem())
        #expect(problems(try meshConfig(dir)).first?.hasPrefix("cluster.conf:4: tls_cert \(dir)/a1.pem: does not name node 'a1'") == true)
    }

    @Test(arguments: [0o640 as mode_t, 0o604, 0o644])
    func aGroupOrOtherReadableKeyIsReportedAtTheKeyLine(mode: mode_t) throws {
        let dir = try temporaryDirectory()
        try TestPKI().writeMesh(into: dir, names: ["a1", "a2"])
        chmod("\(dir)/a1-key.pem", mode)
        #expect(problems(try meshConfig(dir)) == ["cluster.conf:5: tls_key \(dir)/a1-key.pem: is readable by group or others (mode 0\(String(mode, radix: 8))); a private key must be private to its owner: chmod 600 \(dir)/a1-key.pem"])
    }

    @Test func onlyTheNamedNodesFilesAreChecked() throws {
        let dir = try temporaryDirectory()
        try TestPKI().writeMesh(into: dir, names: ["a1"])  // a2's files live on another host
        let config = try meshConfig(dir)
        #expect(problems(config, nodes: ["a1"]) == [])
        #expect(problems(config).first == "cluster.conf:4: tls_cert \(dir)/a2.pem: cannot read: No such file or directory (node a2)")
    }

    @Test func aPlaintextMeshChecksNoMeshFiles() throws {
        let config = try ClusterConfig.parse("[node a1]\nlisten = 127.0.0.1:6001\nmesh = 127.0.0.1:7001\n", file: "cluster.conf")
        #expect(problems(config, nodes: ["a1"]) == [])
    }
}
