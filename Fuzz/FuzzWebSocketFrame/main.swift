import FuzzSupport
import NIOCore
@testable import ChatServer

// The client WebSocket frame reader (`WebSocketFrameReader.read`, over `cutFrame`): the first
// decoder that bytes from the internet reach. Input: one byte picks `maxFrameSize` (and how many
// already-read bytes sit in front of the whole stream's buffer); one byte, mod 8, the number of
// split points, then one byte per split point (scaled to the stream's length); the rest is the
// stream, fed whole, in the chunks those points cut, and (when short) byte by byte.
//
// Promises, checked after every chunk against a plain reading of RFC 6455 §5.2 (`model`):
// the frames come out as soon as their last byte is in, with the header's fin, RSV, opcode and
// mask bit and the payload unmasked (re-masking it with the key on the wire gives the wire
// bytes back); a failure is thrown exactly when the header (up to the extended length) of a
// 64-bit length with its top bit set, a fragmented control frame, a control frame over 125
// bytes (all `protocolViolation`) or a frame over `maxFrameSize` (`frameTooLarge`) is in, and
// not before; `bufferedBytes` is exactly the bytes after the last frame, so never more than a
// header and `maxFrameSize` (nothing it would refuse is kept). Chunking changes none of it.
let limits = [0, 1, 125, 126, 4000, 65_535, 65_536, 1 << 20]

struct Seen: Equatable {
    var fin: Bool
    var reservedBits: UInt8
    var opcode: UInt8
    var isMasked: Bool
    var payload: [UInt8]
}

enum FailureKind: Equatable { case frameTooLarge, protocolViolation }

/// What RFC 6455 §5.2 makes of the whole stream: each frame with the offset just past it, and
/// the first refused frame with the offset just past the header bytes that decide it.
struct Expected {
    var frames: [(frame: Seen, end: Int)] = []
    var failure: (kind: FailureKind, decidedAt: Int)?
}

func model(_ wire: [UInt8], maxFrameSize: Int) -> Expected {
    var expected = Expected()
    var start = 0
    while wire.count - start >= 2 {
        let first = wire[start], second = wire[start + 1]
        let fin = first & 0x80 != 0, opcode = first & 0x0F, isMasked = second & 0x80 != 0
        var length = UInt64(second & 0x7F)
        var header = 2
        if length == 126 {
            guard wire.count - start >= 4 else { break }
            length = UInt64(wire[start + 2]) << 8 | UInt64(wire[start + 3])
            header = 4
        } else if length == 127 {
            guard wire.count - start >= 10 else { break }
            length = wire[start + 2 ..< start + 10].reduce(0) { $0 << 8 | UInt64($1) }
            header = 10
        }
        let refusal: FailureKind? =
            length >= 1 << 63 || (opcode >= 8 && (!fin || length > 125)) ? .protocolViolation
            : length > UInt64(maxFrameSize) ? .frameTooLarge : nil
        if let refusal {
            expected.failure = (refusal, start + header)
            break
        }
        let key = isMasked ? Array(wire[(start + header)...].prefix(4)) : [0, 0, 0, 0]
        if isMasked { header += 4 }
        guard wire.count - start >= header, UInt64(wire.count - start - header) >= length else { break }
        let body = wire[(start + header)...].prefix(Int(length))
        let payload = body.enumerated().map { $0.element ^ key[$0.offset % 4] }
        let frame = Seen(fin: fin, reservedBits: (first >> 4) & 7, opcode: opcode, isMasked: isMasked, payload: payload)
        start += header + Int(length)
        expected.frames.append((frame, start))
    }
    return expected
}

struct Outcome: Equatable {
    var frames: [Seen] = []
    var failure: WebSocketFrameReader.Failure?
    var buffered = 0
}

/// Feeds `wire` cut at `cuts` (ascending offsets), each chunk in a buffer with `skew(i)` bytes
/// already read in front of it, checking the reader against `expected` after every chunk.
func feed(_ wire: [UInt8], cuts: [Int], skew: (Int) -> Int, maxFrameSize: Int, _ expected: Expected, _ how: String) -> Outcome {
    var reader = WebSocketFrameReader(maxFrameSize: maxFrameSize)
    var outcome = Outcome()
    var ends = [0]   // where each frame returned so far ends in `wire`
    let bounds = [0] + cuts + [wire.count]
    for index in 0 ..< bounds.count - 1 {
        let fed = bounds[index + 1]
        var buffer = ByteBufferAllocator().buffer(capacity: 0)
        buffer.writeBytes(repeatElement(0xEE, count: skew(index)))
        buffer.moveReaderIndex(to: buffer.writerIndex)
        buffer.writeBytes(wire[bounds[index] ..< fed])
        do {
            try reader.read(buffer, allocator: ByteBufferAllocator()) { frame in
                let seen = Seen(fin: frame.fin, reservedBits: frame.reservedBits, opcode: frame.opcode,
                                isMasked: frame.isMasked, payload: Array(frame.payload.readableBytesView))
                let number = outcome.frames.count
                expect(number < expected.frames.count, "\(how): frame \(number) returned, the stream has \(expected.frames.count)")
                let end = expected.frames[number].end
                expect(end <= fed, "\(how): frame \(number) returned at byte \(fed), before its last byte \(end)")
                expect(seen == expected.frames[number].frame, "\(how): frame \(number) is \(seen), the header says \(expected.frames[number].frame)")
                checkFrame(seen, wire: wire[ends.last! ..< end], maxFrameSize: maxFrameSize, how)
                outcome.frames.append(seen)
                ends.append(end)
            }
        } catch let failure as WebSocketFrameReader.Failure {
            let kind: FailureKind
            switch failure {
            case .frameTooLarge: kind = .frameTooLarge
            case .protocolViolation: kind = .protocolViolation
            }
            expect(expected.failure.map { $0.kind == kind && $0.decidedAt <= fed } ?? false,
                   "\(how): \(failure) after \(fed) bytes, expected \(String(describing: expected.failure))")
            expect(outcome.frames.count == expected.frames.count, "\(how): \(failure) after \(outcome.frames.count) of \(expected.frames.count) frames")
            outcome.failure = failure
            return outcome   // the reader must not be used again
        } catch {
            expect(false, "\(how): read threw \(error)")
        }
        let due = expected.frames.prefix { $0.end <= fed }.count
        expect(outcome.frames.count == due, "\(how): \(outcome.frames.count) frames after \(fed) bytes, \(due) are complete")
        if let failure = expected.failure {
            expect(failure.decidedAt > fed, "\(how): no failure after \(fed) bytes, \(failure.kind) was decided at \(failure.decidedAt)")
        }
        expect(reader.bufferedBytes == fed - ends.last!, "\(how): \(reader.bufferedBytes) bytes buffered after \(fed) bytes, \(fed - ends.last!) are unread")
        expect(reader.bufferedBytes <= 14 + maxFrameSize, "\(how): \(reader.bufferedBytes) bytes buffered, limit \(maxFrameSize)")
    }
    outcome.buffered = reader.bufferedBytes
    return outcome
}

/// The promises of one frame on its own: within the limits, and unmasking undone by masking.
func checkFrame(_ frame: Seen, wire: ArraySlice<UInt8>, maxFrameSize: Int, _ how: String) {
    expect(frame.payload.count <= maxFrameSize, "\(how): \(frame.payload.count)-byte payload, limit \(maxFrameSize)")
    if frame.opcode & 0x8 != 0 {
        expect(frame.fin, "\(how): fragmented control frame returned")
        expect(frame.payload.count <= 125, "\(how): \(frame.payload.count)-byte control frame returned")
    }
    let header = wire.count - frame.payload.count
    expect([2, 4, 10].contains(header - (frame.isMasked ? 4 : 0)), "\(how): a \(header)-byte header")
    let body = wire.dropFirst(header)
    guard frame.isMasked else {
        expect(frame.payload.elementsEqual(body), "\(how): unmasked payload differs from the wire")
        return
    }
    let key = Array(wire[(wire.startIndex + header - 4)...].prefix(4))
    let remasked = frame.payload.enumerated().map { $0.element ^ key[$0.offset & 3] }
    expect(remasked.elementsEqual(body), "\(how): re-masking the payload does not give the wire bytes")
}

fuzz { input in
    var reader = FuzzReader(input)
    let control = reader.byte()
    let maxFrameSize = limits[Int(control) % limits.count]
    let splits = reader.take(Int(reader.byte()) % 8)
    let wire = reader.rest()
    let expected = model(wire, maxFrameSize: maxFrameSize)

    let whole = feed(wire, cuts: [], skew: { _ in Int(control >> 3) % 4 }, maxFrameSize: maxFrameSize, expected, "whole")
    let cuts = splits.map { Int($0) * wire.count / 255 }.sorted()
    let chunked = feed(wire, cuts: cuts, skew: { $0 % 3 }, maxFrameSize: maxFrameSize, expected, "cut at \(cuts)")
    expect(chunked == whole, "cut at \(cuts) of \(wire.count) reads differently")
    if wire.count <= 128 {
        let bytewise = feed(wire, cuts: Array(1 ..< max(wire.count, 1)), skew: { $0 % 2 }, maxFrameSize: maxFrameSize, expected, "byte by byte")
        expect(bytewise == whole, "byte-by-byte feeding reads differently")
    }
}
