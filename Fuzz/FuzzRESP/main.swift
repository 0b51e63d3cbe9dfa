import FuzzSupport
import NIOCore
import RedisFanout

// The RESP2 decoder (`RESPDecoder.next`): the byte stream from the Redis server (or from
// whatever answers at its address). The first byte picks the limits (tight ones, so they are
// hit, or the defaults) and a point to split the stream at.
//
// Promises: every outcome is a value, "need more data" (consuming nothing), or a `RESPError`;
// a value consumes at least one byte; each value re-encodes to RESP that decodes to the same
// value; a stream split anywhere decodes to the same values and the same error as the whole.
let decoders = [
    RESPDecoder(maxBulkLength: 64, maxArrayCount: 8, maxLineLength: 32, maxDepth: 4),
    RESPDecoder(maxBulkLength: 0, maxArrayCount: 0, maxLineLength: 0, maxDepth: 0),
    RESPDecoder(maxBulkLength: 1024, maxArrayCount: 100, maxLineLength: 64, maxDepth: 8),
    RESPDecoder(),
]

func checkRoundTrip(_ value: RESPValue, _ decoder: RESPDecoder) {
    // The same limits, but lines 3 times as long plus room for any integer: a simple string's
    // invalid UTF-8 was replaced by U+FFFD (3 bytes each) when it was decoded.
    let decoder = RESPDecoder(maxBulkLength: decoder.maxBulkLength, maxArrayCount: decoder.maxArrayCount,
                              maxLineLength: 3 * decoder.maxLineLength + 24, maxDepth: decoder.maxDepth)
    var buffer = ByteBufferAllocator().buffer(capacity: 0)
    RESPEncoder.writeValue(value, into: &buffer)
    let length = buffer.readableBytes
    do {
        let again = try decoder.next(from: &buffer)
        expect(again == value, "\(value) re-encodes to RESP that decodes to \(String(describing: again))")
        expect(buffer.readableBytes == 0, "\(value) re-encoded with \(buffer.readableBytes) of \(length) bytes left over")
    } catch {
        expect(false, "\(value) re-encodes to RESP that fails: \(error)")
    }
}

fuzz { input in
    var reader = FuzzReader(input)
    let control = reader.byte()
    let decoder = decoders[Int(control) % decoders.count]
    let stream = reader.rest()
    let whole = decodeSplitAnywhere(stream, splitAt: Int(control / 4) * stream.count / 64, next: decoder.next(from:),
                                    checkError: { _, consumed in expect(consumed == 0, "an error consumed \(consumed) bytes") })
    for value in whole.values { checkRoundTrip(value, decoder) }
}
