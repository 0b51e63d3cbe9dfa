import Testing
@testable import ClusterConfig
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Writes `bytes` to a fresh temporary file and returns its path.
private func temporaryFile(_ bytes: [UInt8]) throws -> String {
    var template = Array("/tmp/clusterconfig-test-XXXXXX".utf8CString)
    let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
    try #require(fd >= 0)
    defer { close(fd) }
    let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    try #require(written == bytes.count)
    return template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
}

@Test func loadReadsAndParsesAFile() throws {
    let path = try temporaryFile(Array(shippedExample.utf8))
    defer { unlink(path) }
    let config = try ClusterConfig.load(path: path)
    #expect(config == (try ClusterConfig.parse(shippedExample, file: path)))
}

@Test func loadReportsErrorsWithThePath() throws {
    let path = try temporaryFile(Array("[node a1]\nlisten = 127.0.0.1\n".utf8))
    defer { unlink(path) }
    #expect(throws: ConfigError(file: path, line: 2, message: "bad listen address: missing port in '127.0.0.1'; expected host:port, e.g. 127.0.0.1:6001")) {
        try ClusterConfig.load(path: path)
    }
}

@Test func unreadableFileIsALineZeroError() {
    #expect(throws: ConfigError(file: "/nonexistent/cluster.conf", line: 0, message: "cannot read: No such file or directory")) {
        try ClusterConfig.load(path: "/nonexistent/cluster.conf")
    }
    #expect(throws: ConfigError(file: "/tmp", line: 0, message: "cannot read: Is a directory")) {
        try ClusterConfig.load(path: "/tmp")
    }
}

@Test func invalidUTF8IsReportedAtItsLine() throws {
    let path = try temporaryFile(Array("[cluster]\nsecret = ".utf8) + [0xFF, 0xFE] + Array("\n".utf8))
    defer { unlink(path) }
    #expect(throws: ConfigError(file: path, line: 2, message: "not valid UTF-8")) {
        try ClusterConfig.load(path: path)
    }
}

@Test func oversizedFileIsRefused() throws {
    let path = try temporaryFile([UInt8](repeating: 0x23, count: ClusterConfig.maxFileSize + 1))
    defer { unlink(path) }
    let error = #expect(throws: ConfigError.self) { try ClusterConfig.load(path: path) }
    #expect(error?.line == 0)
    #expect(error?.message.hasPrefix("file is larger than 1048576 bytes") == true)
}
