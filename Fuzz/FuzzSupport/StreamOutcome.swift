import NIOCore

/// What a stream decoder (`next(from: &ByteBuffer)`: a value, nil for "need more data", or an
/// error) made of one byte stream: the values in order, then the error that stopped it, or the
/// bytes left unread at the end. Two deliveries of the same stream must give equal outcomes.
public struct StreamOutcome<Value: Equatable, Failure: Error & Equatable>: Equatable {
    public var values: [Value] = []
    public var error: Failure?
    /// Unread bytes after the last chunk; 0 after an error, since what is left then depends on
    /// how much had arrived.
    public var leftover = 0
}

/// Feeds `chunks` in turn into one buffer, as TCP may deliver a stream, and drains every
/// complete value after each with `next`, until it throws. Checks what every stream decoder
/// here promises: "need more data" consumes nothing and a value consumes at least one byte.
/// `checkValue` gets each value with the bytes it consumed, `checkError` each error with the
/// number of bytes consumed by the call that threw, for the decoder's own promises.
public func decodeAll<Value, Failure>(
    _ chunks: [ArraySlice<UInt8>],
    next: (inout ByteBuffer) throws(Failure) -> Value?,
    checkValue: (Value, _ consumed: [UInt8]) -> Void = { _, _ in },
    checkError: (Failure, _ consumedCount: Int) -> Void = { _, _ in }
) -> StreamOutcome<Value, Failure> {
    var outcome = StreamOutcome<Value, Failure>()
    var buffer = ByteBufferAllocator().buffer(capacity: 0)
    for chunk in chunks {
        buffer.writeBytes(chunk)
        while true {
            let before = buffer.readerIndex
            let pending = buffer.readableBytesView
            do throws(Failure) {
                guard let value = try next(&buffer) else {
                    expect(buffer.readerIndex == before, "need-more-data consumed \(buffer.readerIndex - before) bytes")
                    break
                }
                let consumed = buffer.readerIndex - before
                expect(consumed > 0, "a value consumed nothing")
                checkValue(value, Array(pending.prefix(consumed)))
                outcome.values.append(value)
            } catch {
                checkError(error, buffer.readerIndex - before)
                outcome.error = error
                return outcome
            }
        }
    }
    outcome.leftover = buffer.readableBytes
    return outcome
}

/// Decodes `stream` whole, split in two at `split`, and (up to 64 bytes) byte by byte, and
/// expects the same outcome from each: where TCP cuts a stream must not change what it says.
/// Returns the outcome of the whole stream.
public func decodeSplitAnywhere<Value, Failure>(
    _ stream: [UInt8], splitAt split: Int,
    next: (inout ByteBuffer) throws(Failure) -> Value?,
    checkValue: (Value, _ consumed: [UInt8]) -> Void = { _, _ in },
    checkError: (Failure, _ consumedCount: Int) -> Void = { _, _ in }
) -> StreamOutcome<Value, Failure> {
    func decode(_ chunks: [ArraySlice<UInt8>]) -> StreamOutcome<Value, Failure> {
        decodeAll(chunks, next: next, checkValue: checkValue, checkError: checkError)
    }
    let whole = decode([stream[...]])
    let chunked = decode([stream[..<split], stream[split...]])
    expect(chunked == whole, "split at \(split) of \(stream.count) decodes differently")
    if stream.count <= 64 {
        expect(decode(stream.map { [$0][...] }) == whole, "byte-by-byte feeding decodes differently")
    }
    return whole
}
