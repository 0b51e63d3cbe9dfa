import CLibCrypto
import ClusterConfig

/// The checks `check-config` and `serve` run on the PEM files cluster.conf names, so a
/// mistake shows at the line that names the file instead of as a failed TLS handshake later:
/// unreadable file, wrong kind of PEM, key not matching its certificate, certificate not signed
/// by the cluster CA, outside its validity window, a mesh certificate that does not name its
/// node, a private key that group or others may read.
public struct TLSFileChecks {
    /// cluster.conf's path, for the `file:line` of every problem.
    public var configFile: String
    private var problems: [ConfigError] = []
    /// Files already read, by path: a shared CA is reported once.
    private var certificateCache: [String: Result<[Certificate], FileProblem>] = [:]

    /// Every problem with the files `config` names for `nodes` (the mesh and client TLS files of
    /// those nodes, and the Redis TLS files), in file-line order; empty when all are usable.
    public static func problems(in config: ClusterConfig, configFile: String, nodes: [String]) -> [ConfigError] {
        var checks = TLSFileChecks(configFile: configFile)
        checks.run(config, nodes: nodes)
        return checks.problems.sorted { $0.line < $1.line }
    }

    init(configFile: String) { self.configFile = configFile }

    private mutating func report(_ line: Int, _ key: String, _ path: String, _ message: String) {
        let problem = ConfigError(file: configFile, line: line, message: "\(key) \(path): \(message)")
        if !problems.contains(problem) { problems.append(problem) }
    }

    private mutating func run(_ config: ClusterConfig, nodes: [String]) {
        if let tls = config.mesh.tls, config.fanout == .mesh {
            let roots = certificates(tls.caFile, key: "tls_ca", line: tls.caLine)
            for name in nodes {
                let certPath = tls.certFile(for: name), keyPath = tls.keyFile(for: name)
                let what = tls.certFile.contains("%n") ? " (node \(name))" : ""
                guard let chain = certificates(certPath, key: "tls_cert", line: tls.certLine, note: what) else {
                    checkKey(keyPath, matching: nil, certPath: certPath, key: "tls_key", line: tls.keyLine)
                    continue
                }
                let leaf = chain[0]
                var valid = checkValidity(leaf, key: "tls_cert", path: certPath, line: tls.certLine)
                if valid, let roots {
                    valid = checkSigned(chain, by: roots, caPath: tls.caFile, key: "tls_cert", path: certPath, line: tls.certLine)
                }
                if !leaf.namesHost(name) {
                    report(tls.certLine, "tls_cert", certPath, "does not name node '\(name)': a mesh certificate needs subjectAltName DNS:\(name) (its subject is \(leaf.subject)); `chatmesh gen-certs` makes such certificates")
                }
                checkKey(keyPath, matching: leaf, certPath: certPath, key: "tls_key", line: tls.keyLine)
            }
        }
        for name in nodes {
            guard let tls = config.node(named: name)?.clientTLS else { continue }
            let section = "[node \(name)]"
            guard let chain = certificates(tls.certFile, key: "tls_cert", line: tls.certLine, note: " in \(section)") else {
                checkKey(tls.keyFile, matching: nil, certPath: tls.certFile, key: "tls_key", line: tls.keyLine)
                continue
            }
            _ = checkValidity(chain[0], key: "tls_cert", path: tls.certFile, line: tls.certLine)
            checkKey(tls.keyFile, matching: chain[0], certPath: tls.certFile, key: "tls_key", line: tls.keyLine)
        }
        if let tls = config.redisTLS {
            if let ca = tls.caFile { _ = certificates(ca, key: "tls_ca", line: tls.caLine, note: " in [redis]") }
            if let cert = tls.certFile, let key = tls.keyFile {
                let chain = certificates(cert, key: "tls_cert", line: tls.certLine, note: " in [redis]")
                if let leaf = chain?.first { _ = checkValidity(leaf, key: "tls_cert", path: cert, line: tls.certLine) }
                checkKey(key, matching: chain?.first, certPath: cert, key: "tls_key", line: tls.keyLine)
            }
        }
    }

    /// The certificates in `path`, or nil after reporting why there are none.
    private mutating func certificates(_ path: String, key: String, line: Int, note: String = "") -> [Certificate]? {
        let result = certificateCache[path] ?? PEMFile.read(path).flatMap { $0.certificates() }
        certificateCache[path] = result
        switch result {
        case .success(let chain): return chain
        case .failure(let problem):
            report(line, key, path, problem.message + note)
            return nil
        }
    }

    private mutating func checkValidity(_ certificate: Certificate, key: String, path: String, line: Int) -> Bool {
        guard let problem = certificate.validityProblem() else { return true }
        report(line, key, path, "the certificate \(problem)")
        return false
    }

    /// Verifies `chain` (leaf first, then any intermediates) up to one of `roots`.
    private mutating func checkSigned(_ chain: [Certificate], by roots: [Certificate], caPath: String,
                                      key: String, path: String, line: Int) -> Bool {
        guard let store = X509_STORE_new() else { return true }
        defer { X509_STORE_free(store) }
        for root in roots { _ = X509_STORE_add_cert(store, root.pointer) }
        guard let context = X509_STORE_CTX_new() else { return true }
        defer { X509_STORE_CTX_free(context) }
        let untrusted = OPENSSL_sk_new_null()
        defer { OPENSSL_sk_free(untrusted) }
        for intermediate in chain.dropFirst() { _ = OPENSSL_sk_push(untrusted, UnsafeRawPointer(intermediate.pointer)) }
        guard X509_STORE_CTX_init(context, store, chain[0].pointer, untrusted) == 1 else { return true }
        if X509_verify_cert(context) == 1 { return true }
        let code = X509_STORE_CTX_get_error(context)
        ERR_clear_error()
        let reason = String(cString: X509_verify_cert_error_string(Int(code)))
        report(line, key, path, "is not signed by the cluster CA in tls_ca \(caPath) (\(reason))")
        return false
    }

    /// The private key at `path`: private to its owner, a key OpenSSL reads, and the one whose
    /// public half is in `certificate` (when the certificate could be read).
    private mutating func checkKey(_ path: String, matching certificate: Certificate?, certPath: String, key: String, line: Int) {
        let file: PEMFile
        switch PEMFile.read(path) {
        case .success(let f): file = f
        case .failure(let problem):
            report(line, key, path, problem.message)
            return
        }
        if file.mode & 0o077 != 0 {
            report(line, key, path, "is readable by group or others (mode \(octal(file.mode))); a private key must be private to its owner: chmod 600 \(path)")
        }
        switch file.privateKey() {
        case .failure(let problem):
            report(line, key, path, problem.message)
        case .success(let privateKey):
            if let certificate, X509_check_private_key(certificate.pointer, privateKey.pointer) != 1 {
                ERR_clear_error()
                report(line, key, path, "does not match the certificate in \(certPath) (it is the private key of another certificate)")
            }
        }
    }
}

/// `0640` for a permission mode.
func octal(_ mode: UInt32) -> String {
    let text = String(mode, radix: 8)
    return String(repeating: "0", count: max(0, 4 - text.count)) + text
}
