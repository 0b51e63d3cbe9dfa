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
    _ = decodeSplitAnywhere(stream, splitAt: Int(control / 8) * stream.count / 32, next: decoder.next(from:)) { frame, wire in
        let length = wire.prefix(4).reduce(0) { $0 << 8 | Int($1) }
        expect(wire.count >= 4 && length + 4 == wire.count, "frame consumed \(wire.count) bytes, prefix said \(length)")
        expect(length <= decoder.maxFrameLength, "frame over the limit accepted")
        checkCanonical(frame, wire)
    } checkError: { error, _ in
        // What is left after an error depends on how much had arrived: not compared.
        if case .frameTooLarge(let length, let limit) = error {
            expect(length > limit && limit == decoder.maxFrameLength, "\(error) with limit \(decoder.maxFrameLength)")
        }
        // Only SESSION frames (pid length, state tag, start offset) and the relay frames (kinds,
        // sid, origin and content type lengths, status) check their fields' values.
        if case .invalidField(let what) = error {
            expect(what.hasPrefix("session frame: ") || what.hasPrefix("relay frame: "),
                   "invalidField outside a SESSION or relay frame: \(what)")
        }
    }
}
