import NIOCore
import Testing
@testable import MeshFanout

@Suite struct MeshFrameDecoderTests {
    let decoder = MeshFrameDecoder(maxFrameLength: 1 << 16)

    /// Every sample frame back to back, as one stream.
    var stream: [UInt8] { sampleFrames.flatMap(wire) }

    // MARK: Framing a stream

    @Test func streamSplitAtEveryByteBoundaryYieldsTheSameFrames() throws {
        let bytes = stream
        for split in 0...bytes.count {
            var input = buffer(Array(bytes[..<split]))
            var frames = try drain(decoder, &input)
            input.writeBytes(bytes[split...])
            frames += try drain(decoder, &input)
            #expect(frames == sampleFrames, "split at \(split)")
            #expect(input.readableBytes == 0)
        }
    }

    @Test func streamFedOneByteAtATimeYieldsTheSameFrames() throws {
        var input = ByteBufferAllocator().buffer(capacity: 0)
        var frames: [MeshFrame] = []
        for byte in stream {
            input.writeInteger(byte)
            frames += try drain(decoder, &input)
        }
        #expect(frames == sampleFrames)
        #expect(input.readableBytes == 0)
    }

    @Test func streamFedInIrregularChunksYieldsTheSameFrames() throws {
        let bytes = stream
        var generator = SplitMix64(seed: 7)
        for _ in 0..<200 {
            var input = ByteBufferAllocator().buffer(capacity: 0)
            var frames: [MeshFrame] = []
            var offset = 0
            while offset < bytes.count {
                let end = min(bytes.count, offset + Int.random(in: 1...40, using: &generator))
                input.writeBytes(bytes[offset..<end])
                frames += try drain(decoder, &input)
                offset = end
            }
            #expect(frames == sampleFrames)
        }
    }

    @Test func incompleteFrameIsNotConsumed() throws {
        let bytes = wire(.sub("room"))
        for cut in 0..<bytes.count {
            var input = buffer(Array(bytes.prefix(cut)))
            #expect(try decoder.next(from: &input) == nil)
            #expect(input.readableBytes == cut, "the decoder must not eat a partial frame")
        }
    }

    @Test func decoderLeavesTheFollowingFrameInTheBuffer() throws {
        var input = buffer(wire(.ack(1)) + wire(.ack(2)).prefix(6))
        #expect(try decoder.next(from: &input) == .ack(1))
        #expect(try decoder.next(from: &input) == nil)
        #expect(input.readableBytes == 6)
    }

    @Test func frameOfExactlyTheLimitIsAccepted() throws {
        let frame = MeshFrame.pub(sequence: 1, room: "r", payload: buffer([UInt8](repeating: 1, count: 100)))
        let length = wire(frame).count - 4
        var input = buffer(wire(frame))
        #expect(try MeshFrameDecoder(maxFrameLength: length).next(from: &input) == frame)
    }

    // MARK: Refusals

    @Test func oversizedLengthIsRefusedFromThePrefixAlone() {
        var input = buffer(hex("00001001"))
        #expect(throws: MeshFrameError.frameTooLarge(length: 4097, limit: 4096)) {
            try MeshFrameDecoder(maxFrameLength: 4096).next(from: &input)
        }
    }

    @Test func maximalLengthPrefixIsRefusedBeforeTheBody() {
        var input = buffer(hex("FFFFFFFF 04"))
        #expect(throws: MeshFrameError.frameTooLarge(length: 0xFFFF_FFFF, limit: 1 << 16)) {
            try decoder.next(from: &input)
        }
    }

    @Test func frameOneByteOverTheLimitIsRefused() {
        let frame = MeshFrame.pub(sequence: 1, room: "r", payload: buffer([UInt8](repeating: 1, count: 100)))
        let length = wire(frame).count - 4
        var input = buffer(wire(frame))
        #expect(throws: MeshFrameError.frameTooLarge(length: length, limit: length - 1)) {
            try MeshFrameDecoder(maxFrameLength: length - 1).next(from: &input)
        }
    }

    @Test func zeroLengthIsAnEmptyFrame() {
        var input = buffer(hex("00000000"))
        #expect(throws: MeshFrameError.emptyFrame) { try decoder.next(from: &input) }
        #expect(decodeError([]) == .emptyFrame)
    }

    @Test(arguments: [UInt8(0), 17, 18, 0x7F, 0xFF])
    func unknownTypeIsRefused(_ type: UInt8) {
        var input = buffer(hex("00000001") + [type])
        #expect(throws: MeshFrameError.unknownType(type)) { try decoder.next(from: &input) }
        #expect(decodeError([type, 0, 0, 0, 0, 0, 0, 0, 0]) == .unknownType(type))
    }

    /// Cutting any field short, for every type, is `truncated(type)`. A PUB's (and a
    /// PUB_STAMPED's) payload is the rest of the frame, so only its sequences and room can be cut.
    @Test(arguments: sampleFrames)
    func everyFieldCutShortIsTruncated(_ frame: MeshFrame) {
        let full = body(frame)
        var minimum = full.count
        if case .pub(_, let room, _) = frame { minimum = 1 + 8 + 2 + room.utf8.count }
        if case .pubStamped(_, _, let room, _) = frame { minimum = 1 + 8 + 8 + 2 + room.utf8.count }
        for cut in 1..<minimum {
            #expect(decodeError(Array(full.prefix(cut))) == .truncated(frame.type), "\(frame) cut to \(cut) bytes")
        }
    }

    @Test func stringLengthBeyondTheBodyIsTruncated() {
        #expect(decodeError(hex("04 0005 7231")) == .truncated(.sub))
        #expect(decodeError(hex("05 FFFF")) == .truncated(.unsub))
        #expect(decodeError(hex("0A 0001")) == .truncated(.goodbye))
        #expect(decodeError(hex("06 0000000000000001 0009 7231")) == .truncated(.pub))
        #expect(decodeError(hex("01 01 0010 6131") + [UInt8](repeating: 0, count: 40)) == .truncated(.hello))
    }

    @Test func helloWithAShortNonceIsTruncated() {
        #expect(decodeError(hex("01 01 0002 6131 0000000000000001") + [UInt8](repeating: 9, count: 31)) == .truncated(.hello))
    }

    @Test(arguments: sampleFrames.filter { $0.type != .pub && $0.type != .pubStamped })
    func trailingBytesAreRefused(_ frame: MeshFrame) {
        #expect(decodeError(body(frame) + [0]) == .trailingBytes(frame.type))
    }

    @Test func bytesAfterAPubRoomBelongToThePayload() throws {
        let decoded = try MeshFrameCodec.decode(body: buffer(body(.pub(sequence: 1, room: "r", payload: buffer([]))) + [0]))
        #expect(decoded == .pub(sequence: 1, room: "r", payload: buffer([0])))
    }

    @Test(arguments: [
        [UInt8(0xFF)],              // never valid
        [0xC0, 0x80],               // overlong NUL
        [0xED, 0xA0, 0x80],         // UTF-16 surrogate
        [0xE2, 0x82],               // cut short
        [0x61, 0x80],               // stray continuation
        [0xF4, 0x90, 0x80, 0x80],   // beyond U+10FFFF
    ])
    func invalidUTF8IsRefusedInEveryStringField(_ bad: [UInt8]) {
        let string = [UInt8(0), UInt8(bad.count)] + bad
        #expect(decodeError([4] + string) == .invalidUTF8(.sub))
        #expect(decodeError([5] + string) == .invalidUTF8(.unsub))
        #expect(decodeError([10] + string) == .invalidUTF8(.goodbye))
        #expect(decodeError(hex("03 00000001") + string) == .invalidUTF8(.snapshot))
        #expect(decodeError(hex("03 00000002 0002 7231") + string) == .invalidUTF8(.snapshot))
        #expect(decodeError(hex("06 0000000000000001") + string + [1, 2]) == .invalidUTF8(.pub))
        #expect(decodeError(hex("0B 0000000000000001 0000000000000001") + string + [1, 2]) == .invalidUTF8(.pubStamped))
        #expect(decodeError([12] + string) == .invalidUTF8(.session))
        #expect(decodeError(hex("0C 0001 70 0001 73") + string) == .invalidUTF8(.session))
        #expect(decodeError(hex("01 01") + string + hex("0000000000000001") + nonceA) == .invalidUTF8(.hello))
    }

    @Test func snapshotCountLargerThanTheBodyCouldHoldIsRefusedUpFront() {
        // 0xFFFFFFFF rooms would reserve gigabytes if believed; each room needs >= 2 bytes.
        #expect(decodeError(hex("03 FFFFFFFF")) == .truncated(.snapshot))
        #expect(decodeError(hex("03 7FFFFFFF 0000 0000")) == .truncated(.snapshot))
        #expect(decodeError(hex("03 00000003 0000 0000")) == .truncated(.snapshot))
    }

    @Test func snapshotOfEmptyRoomNamesExactlyFillingTheBodyDecodes() throws {
        #expect(try MeshFrameCodec.decode(body: buffer(hex("03 00000003 0000 0000 0000"))) == .snapshot(["", "", ""]))
    }

    @Test func maximalSnapshotCountWithinALengthPrefixIsRefusedWithoutBody() {
        var input = buffer(hex("00000005 03 FFFFFFFF"))
        #expect(throws: MeshFrameError.truncated(.snapshot)) { try decoder.next(from: &input) }
    }

    @Test func errorInsideAFrameComesAfterTheFramesBeforeIt() throws {
        var input = buffer(wire(.ack(1)) + hex("00000001 63") + wire(.ack(2)))
        #expect(try decoder.next(from: &input) == .ack(1))
        #expect(throws: MeshFrameError.unknownType(0x63)) { try decoder.next(from: &input) }
    }

    @Test func raisingTheLimitAcceptsALargerFrame() throws {
        var decoder = MeshFrameDecoder(maxFrameLength: 4096)
        let big = MeshFrame.pub(sequence: 1, room: "r", payload: buffer([UInt8](repeating: 7, count: 10_000)))
        var input = buffer(wire(big))
        #expect(throws: MeshFrameError.self) { try decoder.next(from: &input) }
        decoder.maxFrameLength = 1 << 20
        #expect(try decoder.next(from: &input) == big)
    }
}
