import NIOCore
@testable import RedisFanout

func buffer(_ bytes: [UInt8]) -> ByteBuffer {
    var buffer = ByteBufferAllocator().buffer(capacity: bytes.count)
    buffer.writeBytes(bytes)
    return buffer
}

func buffer(_ text: String) -> ByteBuffer {
    buffer(Array(text.utf8))
}

func bytes(_ buffer: ByteBuffer) -> [UInt8] {
    buffer.getBytes(at: buffer.readerIndex, length: buffer.readableBytes)!
}

/// A bulk string value holding the UTF-8 of `text`.
func bulk(_ text: String) -> RESPValue {
    .bulkString(buffer(text))
}

/// Every complete value in `stream`, consumed; stops at the first incomplete one.
func drain(_ decoder: RESPDecoder, _ stream: inout ByteBuffer) throws(RESPError) -> [RESPValue] {
    var values: [RESPValue] = []
    while let value = try decoder.next(from: &stream) { values.append(value) }
    return values
}

/// Like `drain`, but what decoded before an error stays in `values`.
func drain(_ decoder: RESPDecoder, _ stream: inout ByteBuffer, into values: inout [RESPValue]) throws(RESPError) {
    while let value = try decoder.next(from: &stream) { values.append(value) }
}

/// Decodes one value from `input` in a fresh buffer; also returns how many bytes were left.
func decodeOne(_ text: String, _ decoder: RESPDecoder = RESPDecoder()) throws(RESPError) -> (value: RESPValue?, left: Int) {
    try decodeOneBytes(Array(text.utf8), decoder)
}

func decodeOneBytes(_ input: [UInt8], _ decoder: RESPDecoder = RESPDecoder()) throws(RESPError) -> (value: RESPValue?, left: Int) {
    var stream = buffer(input)
    let value = try decoder.next(from: &stream)
    return (value, stream.readableBytes)
}

/// What decoding `input` (all values, in one buffer) throws, or nil if it does not throw.
func decodeError(_ input: [UInt8], _ decoder: RESPDecoder = RESPDecoder()) -> RESPError? {
    var stream = buffer(input)
    do {
        _ = try drain(decoder, &stream)
        return nil
    } catch {
        return error
    }
}

func decodeError(_ text: String, _ decoder: RESPDecoder = RESPDecoder()) -> RESPError? {
    decodeError(Array(text.utf8), decoder)
}

func encoded(_ value: RESPValue) -> [UInt8] {
    var out = ByteBufferAllocator().buffer(capacity: 64)
    RESPEncoder.writeValue(value, into: &out)
    return bytes(out)
}

/// Deterministic generator (SplitMix64) so the fuzz loops are reproducible.
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

/// The pub/sub push Redis sends a subscriber for `PUBLISH channel payload`.
func messagePush(channel: String, payload: String) -> String {
    "*3\r\n$7\r\nmessage\r\n$\(channel.utf8.count)\r\n\(channel)\r\n$\(payload.utf8.count)\r\n\(payload)\r\n"
}

/// Several replies, hand-written as Redis sends them, and the values they decode to: every
/// RESP2 type, nulls, empties, binary bulk, nesting, and the pub/sub pushes the client sees.
let sampleStream: [(wire: String, value: RESPValue)] = [
    ("+OK\r\n", .simpleString("OK")),
    ("-WRONGPASS invalid username-password pair or user is disabled.\r\n",
     .error("WRONGPASS invalid username-password pair or user is disabled.")),
    (":0\r\n", .integer(0)),
    (":-42\r\n", .integer(-42)),
    (":9223372036854775807\r\n", .integer(.max)),
    ("$5\r\nhello\r\n", bulk("hello")),
    ("$0\r\n\r\n", bulk("")),
    ("$-1\r\n", .bulkString(nil)),
    ("$6\r\na\r\nb\r\n\r\n", bulk("a\r\nb\r\n")),
    ("*0\r\n", .array([])),
    ("*-1\r\n", .array(nil)),
    ("*3\r\n$9\r\nsubscribe\r\n$2\r\nr1\r\n:1\r\n", .array([bulk("subscribe"), bulk("r1"), .integer(1)])),
    (messagePush(channel: "r1", payload: #"{"event":"broadcast_say","data":{"username":"carol","text":"hi"}}"#),
     .array([bulk("message"), bulk("r1"), bulk(#"{"event":"broadcast_say","data":{"username":"carol","text":"hi"}}"#)])),
    ("*2\r\n*2\r\n:1\r\n$-1\r\n*1\r\n*0\r\n", .array([.array([.integer(1), .bulkString(nil)]), .array([.array([])])])),
    ("*2\r\n$4\r\npong\r\n$0\r\n\r\n", .array([bulk("pong"), bulk("")])),
    ("+PONG\r\n", .simpleString("PONG")),
]

let sampleWire: [UInt8] = sampleStream.flatMap { Array($0.wire.utf8) }
let sampleValues: [RESPValue] = sampleStream.map(\.value)
