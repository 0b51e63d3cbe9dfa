import FuzzSupport
import MeshFanout
import NIOCore

// The mesh frame decoder (`MeshFrameDecoder.next`, over `MeshFrameCodec.decode(body:)`): the
// byte stream of a link from another node, or from anything that connects to the mesh port.
// The first byte picks the frame limit and a point to split the stream at.
//
// Promises: every outcome is a frame, "need more data" (consuming nothing), or a
// `MeshFrameError`; a frame consumes exactly its length prefix plus body, and re-encodes to
// exactly those bytes (one spelling per frame); a stream split anywhere, as TCP may deliver
// it, decodes to the same frames and the same error as the whole.
let limits = [0, 1, 16, 64, 4096, 1 << 20]


struct Outcome: Equatable {
    var frames: [MeshFrame] = []
    var error: MeshFrameError?
    var leftover = 0
}

/// Feeds the chunks in turn, draining every complete frame after each, until an error.
func decodeAll(_ decoder: MeshFrameDecoder, _ chunks: [ArraySlice<UInt8>]) -> Outcome {
    var outcome = Outcome()
    var buffer = ByteBufferAllocator().buffer(capacity: 0)
    for chunk in chunks {
        buffer.writeBytes(chunk)
        while true {
            let before = buffer.readerIndex
            let pending = buffer.readableBytesView
            let length = buffer.getInteger(at: before, as: UInt32.self)
            do throws(MeshFrameError) {
                guard let frame = try decoder.next(from: &buffer) else {
                    expect(buffer.readerIndex == before, "need-more-data consumed bytes")
                    break
                }
                let consumed = buffer.readerIndex - before
                expect(length.map { Int($0) + 4 == consumed } ?? false, "frame consumed \(consumed) bytes, prefix said \(String(describing: length))")
                expect(length.map { Int($0) <= decoder.maxFrameLength } ?? false, "frame over the limit accepted")
                checkCanonical(frame, Array(pending.prefix(consumed)))
                outcome.frames.append(frame)
            } catch {
                if case .frameTooLarge(let length, let limit) = error {
                    expect(length > limit && limit == decoder.maxFrameLength, "\(error) with limit \(decoder.maxFrameLength)")
                }
                if case .invalidField = error { expect(false, "the codec never throws invalidField") }
                // What is left after an error depends on how much had arrived: not compared.
                outcome.error = error
                return outcome
            }
        }
    }
    outcome.leftover = buffer.readableBytes
    return outcome
}

func checkCanonical(_ frame: MeshFrame, _ wire: [UInt8]) {
    // A GOODBYE reason is cut to 1024 bytes when written, so longer ones cannot come back.
    if case .goodbye(let reason) = frame, reason.utf8.count > 1024 { return }
    let encoded = MeshFrameCodec.encode(frame)
    expect(Array(encoded.readableBytesView) == wire, "\(frame.type) frame does not re-encode to its bytes")
}

fuzz { input in
    var reader = FuzzReader(input)
    let control = reader.byte()
    let decoder = MeshFrameDecoder(maxFrameLength: limits[Int(control) % limits.count])
    let stream = reader.rest()

    let whole = decodeAll(decoder, [stream[...]])
    let split = Int(control / 8) * stream.count / 32
    let chunked = decodeAll(decoder, [stream[..<split], stream[split...]])
    let bytewise = stream.count <= 64 ? decodeAll(decoder, stream.map { [$0][...] }) : whole
    expect(chunked == whole, "split at \(split) of \(stream.count) decodes differently")
    expect(bytewise == whole, "byte-by-byte feeding decodes differently")
}
