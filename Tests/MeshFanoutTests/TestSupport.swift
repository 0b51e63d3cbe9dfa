import ChatCore
import NIOCore
@testable import MeshFanout

/// Bytes from a hex string such as "00 00 00 05 04 00 02 72 31" (spaces ignored).
func hex(_ text: String) -> [UInt8] {
    let digits = Array(text.filter { !$0.isWhitespace })
    precondition(digits.count % 2 == 0, "odd number of hex digits")
    return stride(from: 0, to: digits.count, by: 2).map { UInt8(String(digits[$0...$0 + 1]), radix: 16)! }
}

func buffer(_ bytes: [UInt8]) -> ByteBuffer {
    var buffer = ByteBufferAllocator().buffer(capacity: bytes.count)
    buffer.writeBytes(bytes)
    return buffer
}

func buffer(_ text: String) -> ByteBuffer {
    buffer(Array(text.utf8))
}

/// The frame on the wire, length prefix included.
func wire(_ frame: MeshFrame) -> [UInt8] {
    let encoded = MeshFrameCodec.encode(frame)
    return encoded.getBytes(at: encoded.readerIndex, length: encoded.readableBytes)!
}

/// The body of a frame (type byte + fields), as `MeshFrameCodec.decode(body:)` takes it.
func body(_ frame: MeshFrame) -> [UInt8] {
    Array(wire(frame).dropFirst(MeshFrameCodec.headerLength))
}

/// What decoding `bytes` as a body throws, or nil if it decodes.
func decodeError(_ bytes: [UInt8]) -> MeshFrameError? {
    do {
        _ = try MeshFrameCodec.decode(body: buffer(bytes))
        return nil
    } catch {
        return error
    }
}

/// Drains every complete frame from `stream`; stops at the first incomplete one.
func drain(_ decoder: MeshFrameDecoder, _ stream: inout ByteBuffer) throws(MeshFrameError) -> [MeshFrame] {
    var frames: [MeshFrame] = []
    while let frame = try decoder.next(from: &stream) { frames.append(frame) }
    return frames
}

/// Deterministic generator (SplitMix64) so fuzzing and jitter tests are reproducible.
struct SplitMix64: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

let nonceA: [UInt8] = Array(0..<32)
let nonceB: [UInt8] = Array(100..<132)

/// One frame of every type, with edge cases (empty strings, empty payload, non-ASCII).
let sampleFrames: [MeshFrame] = [
    .hello(MeshHello(node: "a1", epoch: 0x0102_0304_0506_0708, nonce: nonceA)),
    .hello(MeshHello(version: 200, node: "", epoch: .max, nonce: nonceB)),
    .auth(MeshAuth(proof: Array(repeating: 0xAB, count: 32), resumeEpoch: 7, resumeSequence: 9)),
    .auth(MeshAuth(proof: Array(repeating: 0, count: 32), resumeEpoch: 0, resumeSequence: .max)),
    .snapshot([]),
    .snapshot(["r1"]),
    .snapshot(["r1", "", "sälen", "部屋", "🙂"]),
    .sub("r1"),
    .sub(""),
    .unsub("部屋"),
    .pub(sequence: 1, room: "r1", payload: buffer("2[\"message\",{\"text\":\"hi\"}]")),
    .pub(sequence: .max, room: "", payload: buffer([])),
    .pub(sequence: 42, room: "🙂", payload: buffer([0, 0, 0, 0, 0xFF, 0x06])),
    .ack(0),
    .ack(.max),
    .ping(0x0102_0304_0506_0708),
    .pong(12345),
    .goodbye(""),
    .goodbye("node a2 is shutting down"),
    .pubStamped(sequence: 1, originSequence: 1, room: "r1", payload: buffer("2[\"message\",{\"text\":\"hi\"}]")),
    .pubStamped(sequence: .max, originSequence: .max, room: "", payload: buffer([])),
    .pubStamped(sequence: 9, originSequence: 3, room: "部屋", payload: buffer([0, 0, 0, 0, 0xFF, 0x0B])),
    .session(SessionRecord(pid: "AbCdEfGhIjKlMnOpQrSt", sid: "sid-0123456789abcdef", room: "r1", owner: "a1", ownerEpoch: 7)),
    .session(SessionRecord(pid: "p", sid: "s", room: "部屋", username: "sälen", owner: "a2", ownerEpoch: .max,
                           version: 3 << 32 | 1, state: .held(sinceMillis: 1_700_000_000_000),
                           start: RecoveryOffset([1: 5, 0xFFFF_FFFF: .max]))),
    .session(SessionRecord(pid: "p", sid: "s", room: "", username: "", owner: "", ownerEpoch: 0,
                           version: .max, state: .ended(atMillis: .min), start: RecoveryOffset([36: 36]))),
]
