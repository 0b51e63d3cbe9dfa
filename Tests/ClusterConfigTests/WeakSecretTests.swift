import Foundation
import Testing
@testable import ClusterConfig

/// A mesh that crosses hosts refuses a short secret or one printed in chatmesh's own files;
/// a loopback-only mesh is exempt (nothing leaves the host).
@Suite struct WeakSecretTests {
    static func twoHosts(secret: String) -> String {
        "[cluster]\nsecret = \(secret)\n[node a1]\nlisten = 127.0.0.1:6001\nmesh = 127.0.0.1:7001\n[node b1]\nlisten = 10.1.2.4:6001\nmesh = 10.1.2.4:7001\n"
    }

    @Test func theShippedPlaceholderIsRefusedAcrossHosts() {
        #expect(configError(Self.twoHosts(secret: "change-me"))?.description
            == "cluster.conf:2: secret: the secret is the placeholder 'change-me' printed in chatmesh's own files, so anyone can read it. The mesh address 10.1.2.4:7001 of node 'b1' is not loopback, so the secret guards links across hosts; `chatmesh gen-secret` prints a strong one")
        #expect(configError(Self.twoHosts(secret: "Change-Me"))?.line == 2)
    }

    @Test(arguments: ["k", "s3cret", String(repeating: "x", count: SecretStrength.minimumLength - 1)])
    func aShortSecretIsRefusedAcrossHosts(secret: String) {
        #expect(configError(Self.twoHosts(secret: secret))?.description
            == "cluster.conf:2: secret: the secret is \(secret.count) characters; at least 32 are needed. The mesh address 10.1.2.4:7001 of node 'b1' is not loopback, so the secret guards links across hosts; `chatmesh gen-secret` prints a strong one")
    }

    @Test func aLongRandomSecretIsAccepted() throws {
        let good = "9c4e1a7f3b0d6e2a8c5f1b9d3e7a0c4f6b2d8e1a5c9f3b7d0e4a8c2f6b1d5e9a"
        #expect(try ClusterConfig.parse(Self.twoHosts(secret: good), file: "c.conf").secret == good)
        let exactlyLongEnough = String(repeating: "z", count: SecretStrength.minimumLength)
        #expect(configError(Self.twoHosts(secret: exactlyLongEnough)) == nil)
    }

    @Test(arguments: ["change-me", "k"])
    func aLoopbackOnlyMeshIsExempt(secret: String) throws {
        let text = "[cluster]\nsecret = \(secret)\n[node a1]\nlisten = 127.0.0.1:6001\nmesh = 127.0.0.1:7001\n[node a2]\nlisten = [::1]:6002\nmesh = localhost:7002\n"
        #expect(try ClusterConfig.parse(text, file: "c.conf").secret == secret)
    }

    @Test func aWeakSecretFromSecretFileIsRefusedAtTheSecretFileLine() throws {
        let dir = try SecretFileTests.directory()
        try SecretFileTests.write("change-me\n", to: dir + "/secret", mode: 0o600)
        let conf = try SecretFileTests.conf(in: dir, secretPath: dir + "/secret")
        let error = try #require(throws: ConfigError.self) { try ClusterConfig.load(path: conf) }
        #expect(error.file == conf && error.line == 2)
        #expect(error.message.hasPrefix("secret_file \(dir)/secret: the secret is the placeholder 'change-me'"))
    }

    /// Whatever secret the project's own files show is public, so the rule must know it.
    @Test func everySecretShownInTheShippedFilesIsAKnownPlaceholder() throws {
        let root = DocumentedKeysTests.repositoryRoot
        var files = ["cluster.conf", "README.md"]
        let docs = root.appendingPathComponent("docs")
        files += try FileManager.default.contentsOfDirectory(atPath: docs.path).filter { $0.hasSuffix(".md") }.map { "docs/" + $0 }
        var shown: [String] = []
        for file in files {
            for line in try DocumentedKeysTests.text(of: file).split(separator: "\n") {
                let trimmed = line.trimmingCharacters(in: .whitespaces)
                guard trimmed.hasPrefix("secret"), let eq = trimmed.firstIndex(of: "="),
                      trimmed[..<eq].trimmingCharacters(in: .whitespaces) == "secret" else { continue }
                let value = trimmed[trimmed.index(after: eq)...].split(separator: " ").first.map(String.init) ?? ""
                if !value.isEmpty { shown.append(value) }
                #expect(SecretStrength.placeholders.contains(value.lowercased()), "\(file) shows the secret '\(value)', which SecretStrength.placeholders does not list")
            }
        }
        #expect(shown.contains("change-me"), "the shipped cluster.conf's placeholder was not found")
    }
}
