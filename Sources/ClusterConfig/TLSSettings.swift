/// `[mesh] tls = on`: every mesh link is TLS 1.3 with mutual authentication by node
/// certificates signed by the cluster CA. Paths are PEM files; `ClusterConfig.load` makes a
/// relative one relative to cluster.conf's directory.
public struct MeshTLSSettings: Sendable, Equatable {
    /// `tls_ca`: the cluster CA certificate.
    public var caFile: String
    /// `tls_cert` as written; `%n` stands for the node name (see `certFile(for:)`).
    public var certFile: String
    /// `tls_key` as written; `%n` stands for the node name (see `keyFile(for:)`).
    public var keyFile: String
    /// Line of `tls = on` (0 when built in code).
    public var line: Int
    /// Lines of `tls_ca`, `tls_cert` and `tls_key`, so a problem with one of the files is
    /// reported where the file is named.
    public var caLine: Int
    public var certLine: Int
    public var keyLine: Int

    public init(caFile: String, certFile: String, keyFile: String, line: Int = 0, caLine: Int? = nil, certLine: Int? = nil, keyLine: Int? = nil) {
        self.caFile = caFile
        self.certFile = certFile
        self.keyFile = keyFile
        self.line = line
        self.caLine = caLine ?? line
        self.certLine = certLine ?? line
        self.keyLine = keyLine ?? line
    }

    /// The certificate path of node `node`: `%n` replaced by its name.
    public func certFile(for node: String) -> String { Self.expand(certFile, node: node) }

    /// The private key path of node `node`: `%n` replaced by its name.
    public func keyFile(for node: String) -> String { Self.expand(keyFile, node: node) }

    static func expand(_ path: String, node: String) -> String {
        guard path.contains("%n") else { return path }
        return path.split(separator: "%n", omittingEmptySubsequences: false).joined(separator: node)
    }
}

/// `[node NAME] tls_cert` / `tls_key`: the node's `listen` serves HTTPS and WSS.
public struct ClientTLSSettings: Sendable, Equatable {
    public var certFile: String
    public var keyFile: String
    /// Line of the first of the two keys (0 when built in code).
    public var line: Int
    /// Lines of `tls_cert` and `tls_key`.
    public var certLine: Int
    public var keyLine: Int

    public init(certFile: String, keyFile: String, line: Int = 0, certLine: Int? = nil, keyLine: Int? = nil) {
        self.certFile = certFile
        self.keyFile = keyFile
        self.line = line
        self.certLine = certLine ?? line
        self.keyLine = keyLine ?? line
    }
}

/// TLS to Redis: present whenever `[redis] url` is `rediss://`.
public struct RedisTLSSettings: Sendable, Equatable {
    /// `tls_ca`; nil trusts the system's CA store.
    public var caFile: String?
    /// `tls_cert` / `tls_key`: a client certificate, both or neither.
    public var certFile: String?
    public var keyFile: String?
    /// Line of the `rediss://` url (0 when built in code).
    public var line: Int
    /// Lines of `tls_ca`, `tls_cert`, `tls_key` (0 when not set).
    public var caLine: Int
    public var certLine: Int
    public var keyLine: Int

    public init(caFile: String? = nil, certFile: String? = nil, keyFile: String? = nil, line: Int = 0, caLine: Int = 0, certLine: Int = 0, keyLine: Int = 0) {
        self.caFile = caFile
        self.certFile = certFile
        self.keyFile = keyFile
        self.line = line
        self.caLine = caLine
        self.certLine = certLine
        self.keyLine = keyLine
    }
}
