import ClusterConfig
@testable import ClusterSecurity
#if canImport(Glibc)
import Glibc
#endif

/// A fresh directory for one test's files.
func temporaryDirectory() throws -> String {
    var template = Array("/tmp/clustersecurity-test-XXXXXX".utf8CString)
    guard template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) != nil else {
        throw FileProblem("mkdtemp failed")
    }
    return template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
}

/// Writes `text` to `path` (replacing it) with `mode`.
func writeFile(_ path: String, _ text: String, mode: mode_t = 0o600) throws {
    unlink(path)
    try ClusterCertificates.writeNew(path, text, mode: mode)
}

/// A CA and node certificates made by the generator under test, with knobs for the bad variants.
struct TestPKI {
    let caKey: PrivateKey
    let ca: Certificate

    init() throws {
        caKey = try PrivateKey.generateP256()
        ca = try CertificateFactory.makeCA(commonName: "test CA", key: caKey, days: 30)
    }

    /// A key and a certificate for `name`, signed by this CA unless `signer` says otherwise.
    func leaf(_ name: String, altNames: [CertificateFactory.AltName]? = nil, signer: TestPKI? = nil,
              notBeforeOffset: Int = -300, notAfterOffset: Int = 86_400) throws -> (key: PrivateKey, certificate: Certificate) {
        let issuer = signer ?? self
        let key = try PrivateKey.generateP256()
        let certificate = try CertificateFactory.makeLeaf(commonName: name, altNames: altNames ?? [.dns(name), .ip("127.0.0.1")],
                                                          key: key, ca: issuer.ca, caKey: issuer.caKey, days: 1,
                                                          notBeforeOffset: notBeforeOffset, notAfterOffset: notAfterOffset)
        return (key, certificate)
    }

    /// Writes the CA and good pairs for `names` into `dir` (`NAME.pem`, `NAME-key.pem`).
    func writeMesh(into dir: String, names: [String]) throws {
        try writeFile("\(dir)/ca.pem", ca.pem(), mode: 0o644)
        for name in names {
            let pair = try leaf(name)
            try writeFile("\(dir)/\(name).pem", pair.certificate.pem(), mode: 0o644)
            try writeFile("\(dir)/\(name)-key.pem", pair.key.pem())
        }
    }
}

/// Two loopback nodes with TLS mesh files in `dir`: `tls = on` is line 2, tls_ca 3, tls_cert 4, tls_key 5.
func meshConfig(_ dir: String) throws -> ClusterConfig {
    try ClusterConfig.parse("""
        [mesh]
        tls = on
        tls_ca = \(dir)/ca.pem
        tls_cert = \(dir)/%n.pem
        tls_key = \(dir)/%n-key.pem
        [node a1]
        listen = 127.0.0.1:6001
        mesh = 127.0.0.1:7001
        [node a2]
        listen = 127.0.0.1:6002
        mesh = 127.0.0.1:7002
        """, file: "cluster.conf")
}

func problems(_ config: ClusterConfig, nodes: [String] = ["a1", "a2"]) -> [String] {
    TLSFileChecks.problems(in: config, configFile: "cluster.conf", nodes: nodes).map(\.description)
}
