import CLibFuzzer
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Shared plumbing of the fuzz targets in Fuzz/ (built only with CHATMESH_FUZZ set, by
/// `make fuzz`; see Fuzz/run.sh).
///
/// A target's main.swift calls `fuzz { bytes in ... }`: libFuzzer then calls the body with
/// each input. The body decodes it and checks the decoder's promises with `expect`, which
/// traps on a broken one, so libFuzzer keeps that input as a crash artifact.

nonisolated(unsafe) private var fuzzBody: ([UInt8]) -> Void = { _ in }

/// Runs libFuzzer with the process arguments (corpus directories, -max_total_time=…, or
/// files to replay) and exits with its status.
public func fuzz(_ body: @escaping ([UInt8]) -> Void) -> Never {
    fuzzBody = body
    var argc = CommandLine.argc
    var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
    let status = LLVMFuzzerRunDriver(&argc, &argv) { data, size in
        let bytes = size == 0 ? [] : Array(UnsafeBufferPointer(start: data, count: size))
        fuzzBody(bytes)
        return 0
    }
    exit(status)
}

/// A broken invariant: prints what broke and traps, so libFuzzer records the input.
public func expect(_ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String,
                   file: StaticString = #fileID, line: UInt = #line) {
    guard !condition() else { return }
    fatalError("invariant broken: \(message())", file: file, line: line)
}

/// Reads a fuzz input from the front: single bytes that steer the harness, then the rest.
public struct FuzzReader {
    public private(set) var bytes: ArraySlice<UInt8>

    public init(_ bytes: [UInt8]) { self.bytes = bytes[...] }

    public var isEmpty: Bool { bytes.isEmpty }

    /// The next byte, or 0 once the input is used up.
    public mutating func byte() -> UInt8 { bytes.popFirst() ?? 0 }

    /// Up to `count` bytes.
    public mutating func take(_ count: Int) -> [UInt8] {
        let part = bytes.prefix(count)
        bytes = bytes.dropFirst(part.count)
        return Array(part)
    }

    /// A big-endian integer from the next 8 bytes (missing ones read as 0).
    public mutating func uint64() -> UInt64 {
        var value: UInt64 = 0
        for _ in 0..<8 { value = value << 8 | UInt64(byte()) }
        return value
    }

    /// Everything left.
    public mutating func rest() -> [UInt8] {
        defer { bytes = [] }
        return Array(bytes)
    }
}

/// Splits `bytes` at every `separator` (keeping empty parts), as a fuzz input format for
/// sequences: one part per message.
public func parts(_ bytes: [UInt8], separator: UInt8) -> [ArraySlice<UInt8>] {
    bytes.split(separator: separator, omittingEmptySubsequences: false)
}
