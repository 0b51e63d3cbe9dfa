import ClusterConfig
import FuzzSupport
#if canImport(Glibc)
import Glibc
#endif

// The cluster.conf parser (`ClusterConfig.parse`, and `ClusterConfig.load` for files that are
// not UTF-8, which it reports by line before parsing). Promises: any text gives a config or a
// `ConfigError` whose line is 0 (whole-file rules) or a line of the file, never a trap; a
// parsed config has at least one node, each with a listen address, and a printable summary.
let scratchPath = "/tmp/chatmesh-fuzz-config-\(getpid()).conf"

fuzz { bytes in
    let lineCount = bytes.count(where: { $0 == 0x0A }) + 1
    let result: Result<ClusterConfig, Error>
    if let text = String(validating: bytes, as: UTF8.self) {
        result = Result { try ClusterConfig.parse(text, file: "fuzz.conf") }
    } else {
        let fd = open(scratchPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        expect(fd >= 0, "cannot write \(scratchPath)")
        expect(bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) } == bytes.count, "short write")
        close(fd)
        result = Result { try ClusterConfig.load(path: scratchPath) }
        unlink(scratchPath)
    }
    switch result {
    case .success(let config):
        expect(!config.nodes.isEmpty, "a config without nodes")
        expect(config.nodes.allSatisfy { (1...lineCount).contains($0.line) }, "node line outside the file")
        expect(!config.summary().isEmpty, "empty summary")
    case .failure(let error):
        guard let error = error as? ConfigError else {
            expect(false, "parse threw \(type(of: error)), not a ConfigError")
            return
        }
        expect((0...lineCount).contains(error.line), "error at line \(error.line) of \(lineCount): \(error)")
        expect(!error.message.isEmpty, "error without a message")
    }
}
