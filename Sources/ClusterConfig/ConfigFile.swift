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

    /// Reads and parses the file at `path`.
    /// - Throws: `ConfigError` (line 0 when the file cannot be read or is too large).
    public static func load(path: String) throws -> ClusterConfig {
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
            if result.count > maxFileSize {
                return .failure("file is larger than \(maxFileSize) bytes; is this really a cluster.conf?")
            }
        }
    }

    private static func errorText(_ code: Int32) -> String {
        guard let text = strerror(code) else { return "error \(code)" }
        return String(cString: text)
    }
}
