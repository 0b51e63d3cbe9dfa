import Testing
@testable import ClusterConfig
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `[cluster] secret_file`: the secret comes from a private file, read when cluster.conf is
/// loaded; every problem with it is reported at the line of `secret_file`.
@Suite struct SecretFileTests {
    /// A fresh directory for one test's files.
    static func directory() throws -> String {
        var template = Array("/tmp/clusterconfig-secret-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        try #require(made != nil)
        return template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }

    static func write(_ text: String, to path: String, mode: mode_t) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        try #require(fd >= 0)
        defer { close(fd) }
        let bytes = Array(text.utf8)
        try #require(bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) } == bytes.count)
        try #require(fchmod(fd, mode) == 0)
    }

    static let strongSecret = "3f9a1c0e7b5d2a4f8e6c1b3d5f7a9c0e2b4d6f8a1c3e5b7d9f0a2c4e6b8d0f1a"

    /// cluster.conf in `dir` whose `secret_file` (line 2) is `secretPath`, with non-loopback mesh addresses.
    static func conf(in dir: String, secretPath: String) throws -> String {
        let path = dir + "/cluster.conf"
        try write("[cluster]\nsecret_file = \(secretPath)\n[node a1]\nlisten = 10.0.0.1:6001\nmesh = 10.0.0.1:7001\n[node a2]\nlisten = 10.0.0.2:6001\nmesh = 10.0.0.2:7001\n", to: path, mode: 0o644)
        return path
    }

    @Test func aPrivateSecretFileSetsTheSecretWithoutItsNewline() throws {
        let dir = try Self.directory()
        try Self.write(Self.strongSecret + "\n", to: dir + "/secret", mode: 0o600)
        let config = try ClusterConfig.load(path: try Self.conf(in: dir, secretPath: dir + "/secret"))
        #expect(config.secret == Self.strongSecret)
        #expect(config.secretFile == dir + "/secret")
        #expect(config.secretLine == 2)
        #expect(config.summary().contains("secret_file: \(dir)/secret"))
        #expect(!config.summary().contains(Self.strongSecret))
    }

    @Test(arguments: [0o640 as mode_t, 0o604, 0o644, 0o660])
    func aGroupOrOtherReadableSecretFileIsRefusedAtItsLine(mode: mode_t) throws {
        let dir = try Self.directory()
        try Self.write(Self.strongSecret, to: dir + "/secret", mode: mode)
        let path = try Self.conf(in: dir, secretPath: dir + "/secret")
        let error = try #require(throws: ConfigError.self) { try ClusterConfig.load(path: path) }
        #expect(error.file == path && error.line == 2)
        #expect(error.message == "secret_file \(dir)/secret: is readable by group or others (mode 0\(String(mode, radix: 8))); the secret must be private to its owner: chmod 600 \(dir)/secret")
    }

    @Test func aMissingOrEmptySecretFileIsRefusedAtItsLine() throws {
        let dir = try Self.directory()
        let path = try Self.conf(in: dir, secretPath: dir + "/absent")
        #expect(throws: ConfigError(file: path, line: 2, message: "secret_file \(dir)/absent: cannot read: No such file or directory")) {
            try ClusterConfig.load(path: path)
        }
        try Self.write("\n", to: dir + "/empty", mode: 0o600)
        let emptyConf = try Self.conf(in: dir, secretPath: dir + "/empty")
        #expect(throws: ConfigError(file: emptyConf, line: 2, message: "secret_file \(dir)/empty: is empty; put the secret in it (`chatmesh gen-secret > \(dir)/empty`)")) {
            try ClusterConfig.load(path: emptyConf)
        }
    }

    @Test func secretAndSecretFileAreExclusive() {
        #expect(configError("[cluster]\nsecret = x\nsecret_file = /s\n" + oneNode)?.description
            == "cluster.conf:3: 'secret_file' and 'secret' (line 2) are both set in [cluster]; set exactly one: secret_file = PATH reads the secret from a file")
    }

    @Test func secretFileSatisfiesTheNonLoopbackSecretRuleWhenParsedAlone() throws {
        let text = "[cluster]\nsecret_file = /run/credentials/chatmesh@a1.service/secret\n[node a1]\nlisten = 10.0.0.1:6001\nmesh = 10.0.0.1:7001\n"
        let config = try ClusterConfig.parse(text, file: "c.conf")
        #expect(config.secret == nil && config.secretFile == "/run/credentials/chatmesh@a1.service/secret")
    }
}

/// Relative paths are relative to cluster.conf's directory, so files beside it are found from
/// anywhere, and from a systemd credentials directory alike.
@Suite struct RelativePathTests {
    @Test func relativePathsAreResolvedAgainstTheConfigsDirectory() throws {
        let dir = try SecretFileTests.directory()
        try SecretFileTests.write(SecretFileTests.strongSecret, to: dir + "/secret", mode: 0o600)
        let text = """
            [cluster]
            secret_file = secret
            [redis]
            url = rediss://cache
            tls_ca = redis-ca.pem
            [mesh]
            tls = on
            tls_ca = ca.pem
            tls_cert = /abs/%n.pem
            tls_key = keys/%n-key.pem
            [node a1]
            listen = 10.0.0.1:6001
            mesh = 10.0.0.1:7001
            tls_cert = https.pem
            tls_key = /abs/https-key.pem
            """
        try SecretFileTests.write(text, to: dir + "/cluster.conf", mode: 0o644)
        let config = try ClusterConfig.load(path: dir + "/cluster.conf")
        #expect(config.secret == SecretFileTests.strongSecret && config.secretFile == dir + "/secret")
        #expect(config.redisTLS?.caFile == dir + "/redis-ca.pem")
        #expect(config.mesh.tls?.caFile == dir + "/ca.pem")
        #expect(config.mesh.tls?.certFile(for: "a1") == "/abs/a1.pem")
        #expect(config.mesh.tls?.keyFile(for: "a1") == dir + "/keys/a1-key.pem")
        #expect(config.nodes[0].clientTLS?.certFile == dir + "/https.pem")
        #expect(config.nodes[0].clientTLS?.keyFile == "/abs/https-key.pem")
    }
}
