import ClusterConfig
import Testing
@testable import ClusterSecurity
#if canImport(Glibc)
import Glibc
#endif

/// `chatmesh gen-certs`' writer: files as `[mesh] tls_*` expects them, private keys private,
/// certificates that pass every check, nothing overwritten.
@Suite struct GenCertsTests {
    static let threeNodes = """
        [cluster]
        secret = 0f3a9c5e1b7d2f8a4c6e0b9d3f5a7c1e
        [node a1]
        listen = 10.1.2.3:6001
        mesh = 10.1.2.3:7001
        [node a2]
        listen = 0.0.0.0:6001
        mesh = 10.1.2.4:7001
        [node a3]
        listen = chat3.example.org:6001
        mesh = [fd00::3]:7001
        """

    @Test func writesACAAndAPairPerNodeWithPrivateKeys() throws {
        let config = try ClusterConfig.parse(Self.threeNodes, file: "cluster.conf")
        let dir = try temporaryDirectory() + "/certs"
        let written = try ClusterCertificates.write(for: config, into: dir)
        #expect(written.files.map { String($0.split(separator: "/").last!) }
            == ["ca.pem", "ca-key.pem", "a1.pem", "a1-key.pem", "a2.pem", "a2-key.pem", "a3.pem", "a3-key.pem"])
        for path in written.files {
            var info = stat()
            try #require(stat(path, &info) == 0)
            #expect(info.st_mode & 0o777 == (path.hasSuffix("-key.pem") ? 0o600 : 0o644), "\(path)")
        }
        #expect(written.meshLines == ["[mesh]", "tls = on", "tls_ca = \(written.directory)/ca.pem",
                                      "tls_cert = \(written.directory)/%n.pem", "tls_key = \(written.directory)/%n-key.pem"])
    }

    @Test func thePrintedLinesMakeAConfigWhoseFilesPassEveryCheck() throws {
        let config = try ClusterConfig.parse(Self.threeNodes, file: "cluster.conf")
        let written = try ClusterCertificates.write(for: config, into: try temporaryDirectory())
        let withTLS = try ClusterConfig.parse(Self.threeNodes + "\n" + written.meshLines.joined(separator: "\n") + "\n", file: "cluster.conf")
        #expect(withTLS.mesh.tls != nil)
        #expect(TLSFileChecks.problems(in: withTLS, configFile: "cluster.conf", nodes: ["a1", "a2", "a3"]) == [])
    }

    @Test func nodeCertificatesNameTheNodeAndItsAddresses() throws {
        let config = try ClusterConfig.parse(Self.threeNodes, file: "cluster.conf")
        #expect(ClusterCertificates.altNames(of: config.nodes[0]) == [.dns("a1"), .ip("10.1.2.3")])
        #expect(ClusterCertificates.altNames(of: config.nodes[1]) == [.dns("a2"), .ip("10.1.2.4")])
        #expect(ClusterCertificates.altNames(of: config.nodes[2]) == [.dns("a3"), .ip("fd00::3"), .dns("chat3.example.org")])
        let written = try ClusterCertificates.write(for: config, into: try temporaryDirectory())
        let a3 = try PEMFile.read(written.directory + "/a3.pem").get().certificates().get()[0]
        #expect(a3.dnsNames == ["a3", "chat3.example.org"])
        #expect(a3.namesHost("a3") && a3.namesHost("chat3.example.org") && !a3.namesHost("a1") && !a3.namesHost("A3"))
    }

    @Test func filesBesideTheConfigAreNamedByBareFileNames() throws {
        let config = try ClusterConfig.parse(Self.threeNodes, file: "cluster.conf")
        let dir = try temporaryDirectory()
        let written = try ClusterCertificates.write(for: config, into: dir)
        #expect(written.meshLines(forConfigAt: dir + "/cluster.conf") == ["[mesh]", "tls = on", "tls_ca = ca.pem", "tls_cert = %n.pem", "tls_key = %n-key.pem"])
        #expect(written.meshLines(forConfigAt: "/etc/chatmesh/cluster.conf") == written.meshLines)
    }

    @Test func existingFilesAreNeverOverwritten() throws {
        let config = try ClusterConfig.parse(Self.threeNodes, file: "cluster.conf")
        let dir = try temporaryDirectory()
        try writeFile("\(dir)/a2-key.pem", "keep me")
        #expect(throws: FileProblem("refusing to overwrite \(dir)/a2-key.pem; write new certificates into another directory (see README \"Security\" for rotation)")) {
            try ClusterCertificates.write(for: config, into: dir)
        }
        #expect(access("\(dir)/ca.pem", F_OK) != 0)
    }
}
