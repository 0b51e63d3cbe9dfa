import CLibCrypto
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A PEM file named by cluster.conf, read once: its bytes and permission bits.
public struct PEMFile {
    public var path: String
    public var bytes: [UInt8]
    /// Permission bits (`st_mode & 0o777`).
    public var mode: UInt32

    /// Far above any certificate chain or key.
    public static let maxSize = 1 << 20

    /// Reads `path`; the failure is a message without a location.
    public static func read(_ path: String) -> Result<PEMFile, FileProblem> {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)  // a FIFO must not hang the check
        guard fd >= 0 else { return .failure(FileProblem("cannot read: \(errnoText(errno))")) }
        defer { _ = close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { return .failure(FileProblem("cannot stat: \(errnoText(errno))")) }
        guard (info.st_mode & S_IFMT) == S_IFREG else { return .failure(FileProblem("not a regular file")) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 16 * 1024)
        while true {
            let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                return .failure(FileProblem("cannot read: \(errnoText(errno))"))
            }
            if n == 0 { break }
            bytes += buffer[0..<n]
            if bytes.count > maxSize { return .failure(FileProblem("larger than \(maxSize) bytes; not a PEM file")) }
        }
        return .success(PEMFile(path: path, bytes: bytes, mode: UInt32(info.st_mode) & 0o777))
    }

    /// The label of the first PEM block (`CERTIFICATE`, `PRIVATE KEY`, ...), if there is one.
    public var firstLabel: String? {
        let text = String(decoding: bytes, as: UTF8.self)
        guard let begin = text.firstRange(of: "-----BEGIN ") else { return nil }
        let rest = text[begin.upperBound...]
        guard let end = rest.firstRange(of: "-----") else { return nil }
        return String(rest[..<end.lowerBound])
    }

    /// Every certificate in the file, in order (a chain: leaf first).
    public func certificates() -> Result<[Certificate], FileProblem> {
        var found: [Certificate] = []
        withBIO { bio in
            while let x509 = PEM_read_bio_X509(bio, nil, nil, nil) {
                found.append(Certificate(taking: x509))
            }
        }
        ERR_clear_error()  // the read that ends the loop leaves "no start line"
        if found.isEmpty { return .failure(FileProblem("not a PEM certificate (\(describeContent()))")) }
        return .success(found)
    }

    /// The one private key in the file; an encrypted key is refused (a node starts unattended).
    public func privateKey() -> Result<PrivateKey, FileProblem> {
        var key: OpaquePointer?
        withBIO { bio in
            // A callback that offers no passphrase, so OpenSSL never prompts on a terminal.
            key = PEM_read_bio_PrivateKey(bio, nil, { _, _, _, _ in 0 }, nil)
        }
        let reason = takeErrorQueue()
        guard let key else {
            if firstLabel == "ENCRYPTED PRIVATE KEY" || (firstLabel?.hasSuffix("PRIVATE KEY") == true && String(decoding: bytes, as: UTF8.self).contains("ENCRYPTED")) {
                return .failure(FileProblem("is an encrypted private key; a node starts unattended, so store it unencrypted and readable by the node's user only"))
            }
            return .failure(FileProblem("not a PEM private key (\(describeContent())\(reason.map { "; \($0)" } ?? ""))"))
        }
        return .success(PrivateKey(taking: key))
    }

    private func describeContent() -> String {
        if bytes.isEmpty { return "the file is empty" }
        if let label = firstLabel { return "found '\(label)'" }
        return "no '-----BEGIN' line"
    }

    private func withBIO(_ body: (OpaquePointer) -> Void) {
        bytes.withUnsafeBytes { raw in
            guard let bio = BIO_new_mem_buf(raw.baseAddress, Int32(raw.count)) else { return }
            defer { BIO_free(bio) }
            body(bio)
        }
    }
}

/// Why a file cannot be used, without a location (the caller adds `file:line`).
public struct FileProblem: Error, Equatable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

func errnoText(_ code: Int32) -> String {
    guard let text = strerror(code) else { return "error \(code)" }
    return String(cString: text)
}
