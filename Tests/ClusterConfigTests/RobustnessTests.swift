import Testing
@testable import ClusterConfig

/// SplitMix64: deterministic, so a failure reproduces.
private struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

@Test func mutatedConfigsEitherParseOrFailAtARealLine() {
    var rng = SplitMix(state: 42)
    let seed = Array(shippedExample.utf8)
    let alphabet = Array("[]=#:@/%. \t\r\n0123456789abcnode-_*,".utf8) + [0x00, 0xC3, 0xA9, 0xFF]
    for _ in 0..<3000 {
        var bytes = seed
        for _ in 0..<Int.random(in: 1...8, using: &rng) {
            let position = Int.random(in: 0..<bytes.count, using: &rng)
            switch Int.random(in: 0..<3, using: &rng) {
            case 0: bytes[position] = alphabet.randomElement(using: &rng)!
            case 1: bytes.insert(alphabet.randomElement(using: &rng)!, at: position)
            default: if bytes.count > 1 { bytes.remove(at: position) }
            }
        }
        let text = String(decoding: bytes, as: UTF8.self)
        let lineCount = text.utf8.split(separator: 0x0A, omittingEmptySubsequences: false).count
        if let error = configError(text, file: "f.conf") {
            #expect(error.file == "f.conf")
            #expect((0...lineCount).contains(error.line), "\(error) for \(text)")
            #expect(!error.message.isEmpty)
        }
    }
}
