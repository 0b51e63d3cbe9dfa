import ClusterConfig
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// `chatmesh gen-certs`: a cluster CA and one key + certificate per node of a cluster.conf,
/// written as `[mesh] tls_*` expects them (`DIR/ca.pem`, `DIR/%n.pem`, `DIR/%n-key.pem`).
public struct ClusterCertificates {
    /// 825 days, the longest validity browsers accept for a TLS server certificate.
    public static let nodeDays = 825
    public static let caDays = 3650

    /// Absolute path of the directory written.
    public var directory: String
    /// Every file written, in order.
    public var files: [String]

    /// The `[mesh]` lines that use the files, ready to paste into cluster.conf.
    public var meshLines: [String] { meshLines(prefix: directory + "/") }

    /// The same lines for the cluster.conf at `configPath`: bare file names when the files are
    /// beside it (relative paths resolve against its directory, which under systemd is the
    /// credentials directory), absolute paths otherwise.
    public func meshLines(forConfigAt configPath: String) -> [String] {
        let configDirectory = configPath.contains("/") ? String(configPath[...configPath.lastIndex(of: "/")!]) : "./"
        guard let resolved = realpath(configDirectory, nil) else { return meshLines }
        defer { free(resolved) }
        return String(cString: resolved) == directory ? meshLines(prefix: "") : meshLines
    }

    private func meshLines(prefix: String) -> [String] {
        ["[mesh]", "tls = on", "tls_ca = \(prefix)ca.pem", "tls_cert = \(prefix)%n.pem", "tls_key = \(prefix)%n-key.pem"]
    }

    /// SAN entries of `node`'s certificate: its name, then its mesh and listen hosts (IP
    /// literals as IP entries, names as DNS entries; wildcard addresses name no host).
    public static func altNames(of node: NodeEntry) -> [CertificateFactory.AltName] {
        var names: [CertificateFactory.AltName] = [.dns(node.name)]
        for host in [node.mesh?.host, node.listen.host].compactMap({ $0 }) {
            let entry: CertificateFactory.AltName
            if isIPAddress(host) {
                if isWildcard(host) { continue }
                entry = .ip(host)
            } else {
                entry = .dns(host)
            }
            if !names.contains(entry) { names.append(entry) }
        }
        return names
    }

    /// Writes the CA and every node's pair into `directory` (created if needed). Keys are
    /// created mode 0600; nothing is overwritten: if any file exists, nothing is written.
    public static func write(for config: ClusterConfig, into directory: String,
                             nodeDays: Int = nodeDays, caDays: Int = caDays) throws -> ClusterCertificates {
        if mkdir(directory, 0o755) != 0 && errno != EEXIST {
            throw FileProblem("cannot create \(directory): \(errnoText(errno))")
        }
        guard let resolved = realpath(directory, nil) else { throw FileProblem("cannot resolve \(directory): \(errnoText(errno))") }
        let absolute = String(cString: resolved)
        free(resolved)

        var plan: [(path: String, mode: mode_t)] = [("ca.pem", 0o644), ("ca-key.pem", 0o600)]
        for node in config.nodes { plan += [("\(node.name).pem", 0o644), ("\(node.name)-key.pem", 0o600)] }
        let existing = plan.map { item -> String in "\(absolute)/\(item.path)" }.filter { path in access(path, F_OK) == 0 }
        if !existing.isEmpty {
            throw FileProblem("refusing to overwrite \(existing.joined(separator: ", ")); write new certificates into another directory (see README \"Security\" for rotation)")
        }

        let caKey = try PrivateKey.generateP256()
        let ca = try CertificateFactory.makeCA(commonName: "chatmesh cluster CA", key: caKey, days: caDays)
        var contents: [String: String] = ["ca.pem": ca.pem(), "ca-key.pem": caKey.pem()]
        for node in config.nodes {
            let key = try PrivateKey.generateP256()
            let certificate = try CertificateFactory.makeLeaf(commonName: node.name, altNames: altNames(of: node),
                                                              key: key, ca: ca, caKey: caKey, days: nodeDays)
            contents["\(node.name).pem"] = certificate.pem()
            contents["\(node.name)-key.pem"] = key.pem()
        }
        var written: [String] = []
        for (name, mode) in plan {
            let path = "\(absolute)/\(name)"
            try writeNew(path, contents[name]!, mode: mode)
            written.append(path)
        }
        return ClusterCertificates(directory: absolute, files: written)
    }

    /// Creates `path` (never replacing a file) with exactly `mode`, whatever the umask.
    static func writeNew(_ path: String, _ text: String, mode: mode_t) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
        guard fd >= 0 else { throw FileProblem("cannot create \(path): \(errnoText(errno))") }
        defer { _ = close(fd) }
        guard fchmod(fd, mode) == 0 else { throw FileProblem("cannot chmod \(path): \(errnoText(errno))") }
        var bytes = Array(text.utf8)[...]
        while !bytes.isEmpty {
            let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw FileProblem("cannot write \(path): \(errnoText(errno))")
            }
            bytes = bytes.dropFirst(n)
        }
    }

    static func isIPAddress(_ host: String) -> Bool {
        var buffer = [UInt8](repeating: 0, count: 16)
        return inet_pton(AF_INET, host, &buffer) == 1 || inet_pton(AF_INET6, host, &buffer) == 1
    }

    static func isWildcard(_ host: String) -> Bool {
        var buffer = [UInt8](repeating: 0, count: 16)
        if inet_pton(AF_INET, host, &buffer) == 1 { return buffer.prefix(4).allSatisfy { $0 == 0 } }
        if inet_pton(AF_INET6, host, &buffer) == 1 { return buffer.allSatisfy { $0 == 0 } }
        return false
    }
}
