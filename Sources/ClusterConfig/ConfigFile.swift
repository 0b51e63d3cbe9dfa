#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

extension ClusterConfig {
    /// A cluster.conf is a few kilobytes; refusing anything huge keeps a wrong path
    /// (a log, a device) from eating memory.
    public static let maxFileSize = 1 << 20

    /// A secret file holds one line; anything larger is the wrong file.
    public static let maxSecretFileSize = 4096

    /// Reads and parses the file at `path`, then reads `[cluster] secret_file` if it is set.
    /// - Throws: `ConfigError` (line 0 when the file cannot be read or is too large).
    ///
    /// A relative path in it (`secret_file`, `tls_*`) is resolved against the directory of
    /// `path`, so the file next to cluster.conf is found wherever the node runs from, and a node
    /// started by systemd with cluster.conf as a credential finds its other credentials beside it.
    public static func load(path: String) throws -> ClusterConfig {
        var config = try loadWithoutSecretFile(path: path)
        config.resolvePaths(relativeTo: directory(of: path))
        if let secretFile = config.secretFile {
            config.secret = try readSecretFile(secretFile, configPath: path, line: config.secretLine)
            try config.checkSecretStrength(file: path)
        }
        return config
    }

    /// The secret in `secretFile`, its trailing newline stripped. The file must be readable by
    /// its owner alone (mode & 0o077 == 0): a secret others can read authenticates nobody.
    /// - Throws: `ConfigError` at `configPath:line`, the line of `secret_file`.
    static func readSecretFile(_ secretFile: String, configPath: String, line: Int) throws -> String {
        func fail(_ message: String) -> ConfigError {
            ConfigError(file: configPath, line: line, message: "secret_file \(secretFile): \(message)")
        }
        let fd = open(secretFile, O_RDONLY | O_CLOEXEC | O_NONBLOCK)  // a FIFO must not hang the load
        guard fd >= 0 else { throw fail("cannot read: \(errorText(errno))") }
        defer { _ = close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw fail("cannot stat: \(errorText(errno))") }
        guard (info.st_mode & S_IFMT) == S_IFREG else { throw fail("not a regular file") }
        let mode = info.st_mode & 0o777
        if mode & 0o077 != 0 {
            throw fail("is readable by group or others (mode \(octal(mode))); the secret must be private to its owner: chmod 600 \(secretFile)")
        }
        var bytes: [UInt8] = []
        switch readAll(fd, limit: maxSecretFileSize) {
        case .success(let b): bytes = b
        case .failure(let problem): throw fail(problem.message)
        }
        while let last = bytes.last, last == 0x0A || last == 0x0D { bytes.removeLast() }
        guard let secret = String(validating: bytes, as: UTF8.self) else { throw fail("not valid UTF-8") }
        if secret.isEmpty { throw fail("is empty; put the secret in it (`chatmesh gen-secret > \(secretFile)`)") }
        if secret.utf8.contains(0x0A) { throw fail("holds more than one line; the secret is one line") }
        return secret
    }

    /// The directory part of `path` with its trailing slash ("" for a bare file name).
    static func directory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "" }
        return String(path[...slash])
    }

    /// Every path key made relative to `directory` (which ends in "/", or is "" to keep them).
    mutating func resolvePaths(relativeTo directory: String) {
        guard !directory.isEmpty else { return }
        func resolve(_ path: String) -> String { path.hasPrefix("/") ? path : directory + path }
        secretFile = secretFile.map(resolve)
        if var tls = mesh.tls {
            tls.caFile = resolve(tls.caFile)
            tls.certFile = resolve(tls.certFile)
            tls.keyFile = resolve(tls.keyFile)
            mesh.tls = tls
        }
        for index in nodes.indices {
            guard var tls = nodes[index].clientTLS else { continue }
            tls.certFile = resolve(tls.certFile)
            tls.keyFile = resolve(tls.keyFile)
            nodes[index].clientTLS = tls
        }
        if var tls = redisTLS {
            tls.caFile = tls.caFile.map(resolve)
            tls.certFile = tls.certFile.map(resolve)
            tls.keyFile = tls.keyFile.map(resolve)
            redisTLS = tls
        }
    }

    /// `0640` for a permission mode.
    static func octal(_ mode: mode_t) -> String {
        let text = String(UInt32(mode), radix: 8)
        return String(repeating: "0", count: max(0, 4 - text.count)) + text
    }

    /// Reads and parses the file at `path` without reading the files it names.
    static func loadWithoutSecretFile(path: String) throws -> ClusterConfig {
        let bytes: [UInt8]
        switch readFile(path) {
        case .success(let b): bytes = b
        case .failure(let message): throw ConfigError(file: path, line: 0, message: message.message)
        }
        guard let text = String(validating: bytes, as: UTF8.self) else {
            var lineNumber = 0
            for (i, line) in bytes.split(separator: 0x0A, omittingEmptySubsequences: false).enumerated()
            where String(validating: line, as: UTF8.self) == nil {
                lineNumber = i + 1
                break
            }
            throw ConfigError(file: path, line: lineNumber, message: "not valid UTF-8")
        }
        return try parse(text, file: path)
    }

    private static func readFile(_ path: String) -> Result<[UInt8], ConfigValueError> {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return .failure("cannot read: \(errorText(errno))") }
        defer { _ = close(fd) }
        return readAll(fd, limit: maxFileSize)
    }

    private static func readAll(_ fd: Int32, limit: Int) -> Result<[UInt8], ConfigValueError> {
        var result: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                let code = errno
                if code == EINTR { continue }
                return .failure("cannot read: \(errorText(code))")
            }
            if n == 0 { return .success(result) }
            result.append(contentsOf: buffer[0..<n])
            if result.count > limit {
                return .failure(limit == maxFileSize
                    ? "file is larger than \(maxFileSize) bytes; is this really a cluster.conf?"
                    : "file is larger than \(limit) bytes; is this really a secret file?")
            }
        }
    }

    static func errorText(_ code: Int32) -> String {
        guard let text = strerror(code) else { return "error \(code)" }
        return String(cString: text)
    }
}
