import NIOCore
import Testing
@testable import RedisFanout

/// Seeded fuzzing: random bytes and mutated valid replies never crash the decoder; each
/// outcome is a value, "need more", or a `RESPError` (the typed `throws(RESPError)` makes that
/// last part a compile-time fact). Every decoded value re-encodes and decodes to itself, and
/// chunked feeding agrees with decoding the whole input at once.
@Suite struct RESPFuzzTests {
    static let decoder = RESPDecoder(maxBulkLength: 64, maxArrayCount: 8, maxLineLength: 32, maxDepth: 4)

    enum Outcome: Equatable {
        case values([RESPValue], left: Int)
        case failed([RESPValue], RESPError)
    }

    /// Decodes `bytes` in one buffer.
    static func whole(_ bytes: [UInt8]) -> Outcome {
        var stream = buffer(bytes)
        var values: [RESPValue] = []
        do {
            while true {
                let before = stream.readerIndex
                guard let value = try decoder.next(from: &stream) else {
                    #expect(stream.readerIndex == before, "nil must consume nothing")
                    return .values(values, left: stream.readableBytes)
                }
                #expect(stream.readerIndex > before, "a value must consume bytes")
                values.append(value)
            }
        } catch {
            return .failed(values, error)
        }
    }

    /// Decodes `bytes` fed in chunks of the given sizes (cycled).
    static func chunked(_ bytes: [UInt8], sizes: [Int]) -> Outcome {
        var stream = ByteBufferAllocator().buffer(capacity: 0)
        var values: [RESPValue] = []
        var index = 0
        var turn = 0
        do {
            while index < bytes.count {
                let end = min(bytes.count, index + sizes[turn % sizes.count])
                turn += 1
                stream.writeBytes(bytes[index..<end])
                index = end
                try drain(decoder, &stream, into: &values)
            }
            return .values(values, left: stream.readableBytes)
        } catch {
            return .failed(values, error)
        }
    }

    static func checkRoundTrip(_ outcome: Outcome) {
        let values: [RESPValue]
        switch outcome {
        case .values(let v, _), .failed(let v, _): values = v
        }
        for value in values {
            let wire = encoded(value)
            var stream = buffer(wire)
            let again = try? decoder.next(from: &stream)
            #expect(again == value, "round trip of \(value)")
            #expect(stream.readableBytes == 0)
        }
    }

    static func checkLimits(_ outcome: Outcome) {
        guard case .failed(_, let error) = outcome else { return }
        switch error {
        case .bulkTooLarge(let length, let limit): #expect(length > limit && limit == 64)
        case .arrayTooLarge(let count, let limit): #expect(count > limit && limit == 8)
        case .lineTooLong(let limit): #expect(limit == 32)
        case .nestingTooDeep(let limit): #expect(limit == 4)
        case .unknownType, .invalidInteger, .invalidLength, .missingCRLF: break
        }
    }

    static func exercise(_ bytes: [UInt8], using generator: inout SplitMix64) -> Outcome {
        let outcome = whole(bytes)
        checkRoundTrip(outcome)
        checkLimits(outcome)
        let sizes = (0..<3).map { _ in Int.random(in: 1...9, using: &generator) }
        let pieces = chunked(bytes, sizes: sizes)
        #expect(pieces == outcome, "chunks \(sizes) of \(bytes) disagree with one buffer")
        return outcome
    }

    /// Bytes that RESP gives meaning to, so random input gets past the first byte often.
    static let alphabet: [UInt8] = Array("+-:$*\r\n\r\n0123456789-1-1OK".utf8) + [0x00, 0xFF, 0x80, 0x5F, 0x25]

    /// Plausible fragments: random sequences of these are often valid, often almost valid.
    static let tokens: [[UInt8]] = ["+OK", "-ERR x", ":12", ":-7", "$3", "$0", "$-1", "$-2", "*2", "*0", "*-1", "*9",
                                    "abc", "\r\n", "\r\n", "\r\n", "\r", "\n", "x"].map { Array($0.utf8) }

    @Test func randomBytesNeverCrashTheDecoder() {
        var generator = SplitMix64(seed: 0x5EED_0201)
        var failures = 0, decoded = 0
        for _ in 0..<30_000 {
            let count = Int.random(in: 0...40, using: &generator)
            let bytes: [UInt8]
            switch Int.random(in: 0...2, using: &generator) {
            case 0: bytes = (0..<count).map { _ in UInt8.random(in: 0...255, using: &generator) }
            case 1: bytes = (0..<count).map { _ in Self.alphabet.randomElement(using: &generator)! }
            default: bytes = (0..<count / 2).flatMap { _ in Self.tokens.randomElement(using: &generator)! }
            }
            switch Self.exercise(bytes, using: &generator) {
            case .failed(let values, _): failures += 1; decoded += values.count
            case .values(let values, _): decoded += values.count
            }
        }
        #expect(failures > 1000)
        #expect(decoded > 1000, "the biased alphabet should produce real values too")
    }

    @Test func mutatedValidRepliesNeverCrashTheDecoder() {
        var generator = SplitMix64(seed: 0x5EED_0202)
        let valid = sampleStream.map { Array($0.wire.utf8) }
        var outcomes = [0, 0]
        for _ in 0..<30_000 {
            var bytes = Array(valid.shuffled(using: &generator).prefix(Int.random(in: 1...3, using: &generator)).joined())
            for _ in 0..<Int.random(in: 1...4, using: &generator) where !bytes.isEmpty {
                let at = Int.random(in: 0..<bytes.count, using: &generator)
                switch Int.random(in: 0...4, using: &generator) {
                case 0: bytes[at] = UInt8.random(in: 0...255, using: &generator)
                case 1: bytes[at] = Self.alphabet.randomElement(using: &generator)!
                case 2: bytes.remove(at: at)
                case 3: bytes.insert(Self.alphabet.randomElement(using: &generator)!, at: at)
                default: bytes.removeLast(Int.random(in: 0...(bytes.count - at), using: &generator))
                }
            }
            if case .failed = Self.exercise(bytes, using: &generator) { outcomes[0] += 1 } else { outcomes[1] += 1 }
        }
        #expect(outcomes[0] > 1000 && outcomes[1] > 1000, "\(outcomes)")
    }

    @Test func randomValuesRoundTripThroughEncoderAndDecoder() throws {
        var generator = SplitMix64(seed: 0x5EED_0203)
        let decoder = RESPDecoder()
        func randomValue(depth: Int) -> RESPValue {
            switch Int.random(in: 0...(depth < 4 ? 6 : 4), using: &generator) {
            case 0: return .simpleString(String(repeating: "s", count: Int.random(in: 0...5, using: &generator)))
            case 1: return .error("ERR \(Int.random(in: 0...99, using: &generator))")
            case 2: return .integer(Int64.random(in: (Int64.min + 1)...Int64.max, using: &generator))
            case 3: return .bulkString(nil)
            case 4:
                let n = Int.random(in: 0...20, using: &generator)
                return .bulkString(buffer((0..<n).map { _ in UInt8.random(in: 0...255, using: &generator) }))
            case 5: return .array(nil)
            default:
                return .array((0..<Int.random(in: 0...4, using: &generator)).map { _ in randomValue(depth: depth + 1) })
            }
        }
        for _ in 0..<5_000 {
            let value = randomValue(depth: 0)
            var stream = buffer(encoded(value))
            #expect(try decoder.next(from: &stream) == value)
            #expect(stream.readableBytes == 0)
        }
    }
}
