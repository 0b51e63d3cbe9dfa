/// The rule a mesh secret must pass once a mesh address leaves the host: long enough not to
/// be guessed, and not a value printed in this project's files (which everyone can read).
public enum SecretStrength {
    /// Characters; `chatmesh gen-secret` prints 64.
    public static let minimumLength = 32

    /// Every secret value shown in the shipped cluster.conf, README.md or docs/ (a unit test
    /// checks that each `secret = VALUE` there is listed), plus their obvious variants.
    public static let placeholders: [String] = [
        "change-me",
        "changeme",
        "change_me",
        "5b0c1e0d2f7a4e8c9d3b6a1f",
    ]

    /// Why `secret` is too weak for a mesh that crosses hosts, or nil when it is fine.
    public static func problem(_ secret: String) -> String? {
        if placeholders.contains(secret.lowercased()) {
            return "the secret is the placeholder '\(secret)' printed in chatmesh's own files, so anyone can read it"
        }
        let length = secret.count
        if length < minimumLength {
            return "the secret is \(length) characters; at least \(minimumLength) are needed"
        }
        return nil
    }
}

extension ClusterConfig {
    /// The first mesh address that is not loopback (by file order), if any: then the mesh
    /// crosses hosts and its secret must be strong.
    var exposedMeshNode: NodeEntry? {
        nodes.first { node in node.mesh.map { !HostAddress.classify($0.host).isLoopback } ?? false }
    }

    /// The weak-secret rule, reported at the line of `secret` / `secret_file` in `file`.
    func checkSecretStrength(file: String) throws {
        guard let secret, let exposed = exposedMeshNode, let mesh = exposed.mesh,
              let problem = SecretStrength.problem(secret) else { return }
        let key = secretFile == nil ? "secret" : "secret_file \(secretFile!)"
        throw ConfigError(file: file, line: secretLine, message: "\(key): \(problem). The mesh address \(mesh) of node '\(exposed.name)' is not loopback, so the secret guards links across hosts; `chatmesh gen-secret` prints a strong one")
    }
}
