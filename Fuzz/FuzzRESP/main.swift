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


struct Outcome: Equatable {
    var values: [RESPValue] = []
    var error: RESPError?
    var leftover = 0
}

func decodeAll(_ decoder: RESPDecoder, _ chunks: [ArraySlice<UInt8>]) -> Outcome {
    var outcome = Outcome()
    var buffer = ByteBufferAllocator().buffer(capacity: 0)
    for chunk in chunks {
        buffer.writeBytes(chunk)
        while true {
            let before = buffer.readerIndex
            do throws(RESPError) {
                guard let value = try decoder.next(from: &buffer) else {
                    expect(buffer.readerIndex == before, "need-more-data consumed bytes")
                    break
                }
                expect(buffer.readerIndex > before, "a value consumed nothing")
                outcome.values.append(value)
            } catch {
                expect(buffer.readerIndex == before, "an error consumed bytes")
                // What is left after an error depends on how much had arrived: not compared.
                outcome.error = error
                return outcome
            }
        }
    }
    outcome.leftover = buffer.readableBytes
    return outcome
}

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

    let whole = decodeAll(decoder, [stream[...]])
    let split = Int(control / 4) * stream.count / 64
    let chunked = decodeAll(decoder, [stream[..<split], stream[split...]])
    let bytewise = stream.count <= 64 ? decodeAll(decoder, stream.map { [$0][...] }) : whole
    expect(chunked == whole, "split at \(split) of \(stream.count) decodes differently")
    expect(bytewise == whole, "byte-by-byte feeding decodes differently")
    for value in whole.values { checkRoundTrip(value, decoder) }
}
