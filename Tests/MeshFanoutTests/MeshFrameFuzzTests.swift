import NIOCore
import Testing
@testable import MeshFanout

/// Deterministic fuzzing of the decoder: random bytes and mutated valid frames must never
/// crash it; every outcome is a frame, "need more data", or a `MeshFrameError` (the typed
/// `throws(MeshFrameError)` guarantees that last part at compile time). Whatever decodes must
/// re-encode to exactly the bytes it came from, so the format has one spelling per frame.
@Suite struct MeshFrameFuzzTests {
    static let limit = 1024

    /// Decodes all of `bytes`; checks the canonical-encoding property on each frame found.
    /// Returns whether it ended in an error.
    @discardableResult
    func exercise(_ bytes: [UInt8]) -> Bool {
        let decoder = MeshFrameDecoder(maxFrameLength: Self.limit)
        var input = buffer(bytes)
        do {
            while true {
                let before = input.readerIndex
                guard let frame = try decoder.next(from: &input) else {
                    #expect(input.readerIndex == before)
                    return false
                }
                let consumed = Array(bytes[before..<input.readerIndex])
                #expect(wire(frame) == consumed, "not canonical: \(consumed)")
            }
        } catch {
            switch error {
            case .frameTooLarge(let length, let limit):
                #expect(length > limit && limit == Self.limit)
            case .emptyFrame, .unknownType, .truncated, .trailingBytes, .invalidUTF8:
                break
            case .invalidField(let what):
                #expect(what.hasPrefix("session frame: ") || what.hasPrefix("relay frame: "),
                        "only SESSION and relay fields are checked beyond their type: \(what)")
            }
            return true
        }
    }

    @Test func randomByteStringsNeverCrashTheDecoder() {
        var generator = SplitMix64(seed: 0x5EED_0001)
        var errors = 0
        for _ in 0..<20_000 {
            let count = Int.random(in: 0...48, using: &generator)
            var bytes = (0..<count).map { _ in UInt8.random(in: 0...255, using: &generator) }
            // Bias toward plausible prefixes so bodies get parsed, not only refused by length.
            if count >= 5, Bool.random(using: &generator) {
                let length = UInt32(count - 4)
                bytes[0] = 0; bytes[1] = 0; bytes[2] = UInt8(length >> 8); bytes[3] = UInt8(length & 0xFF)
                bytes[4] = UInt8.random(in: 0...13, using: &generator)
            }
            if exercise(bytes) { errors += 1 }
        }
        #expect(errors > 0)
    }

    @Test func mutatedValidFramesNeverCrashTheDecoder() {
        var generator = SplitMix64(seed: 0x5EED_0002)
        let valid = sampleFrames.map(wire)
        var decodedSome = 0
        for _ in 0..<20_000 {
            var bytes = valid.randomElement(using: &generator)!
            for _ in 0..<Int.random(in: 1...4, using: &generator) {
                switch Int.random(in: 0..<6, using: &generator) {
                case 0 where !bytes.isEmpty: // flip a bit
                    let index = Int.random(in: bytes.indices, using: &generator)
                    bytes[index] ^= 1 << UInt8.random(in: 0..<8, using: &generator)
                case 1 where !bytes.isEmpty: // overwrite a byte
                    bytes[Int.random(in: bytes.indices, using: &generator)] = UInt8.random(in: 0...255, using: &generator)
                case 2: // insert a byte
                    bytes.insert(UInt8.random(in: 0...255, using: &generator), at: Int.random(in: 0...bytes.count, using: &generator))
                case 3 where !bytes.isEmpty: // delete a byte
                    bytes.remove(at: Int.random(in: bytes.indices, using: &generator))
                case 4: // truncate
                    bytes = Array(bytes.prefix(Int.random(in: 0...bytes.count, using: &generator)))
                default: // append another valid frame
                    bytes += valid.randomElement(using: &generator)!
                }
            }
            if !exercise(bytes) { decodedSome += 1 }
        }
        #expect(decodedSome > 0)
    }

    @Test func mutatedBodiesNeverCrashTheBodyDecoder() {
        var generator = SplitMix64(seed: 0x5EED_0003)
        let bodies = sampleFrames.map(body)
        for _ in 0..<20_000 {
            var bytes = bodies.randomElement(using: &generator)!
            let index = Int.random(in: bytes.indices, using: &generator)
            bytes[index] = UInt8.random(in: 0...255, using: &generator)
            if Bool.random(using: &generator) { bytes = Array(bytes.prefix(Int.random(in: 0...bytes.count, using: &generator))) }
            do {
                let frame = try MeshFrameCodec.decode(body: buffer(bytes))
                #expect(body(frame) == bytes)
            } catch {
                if case .invalidField(let what) = error {
                    #expect(what.hasPrefix("session frame: ") || what.hasPrefix("relay frame: "))
                }
            }
        }
    }
}
