import NIOCore
import Testing

@testable import ChatServer

/// Client frames as RFC 6455 §5 defines them: masked, split anywhere, refused when malformed.
struct WebSocketFrameReaderTests {
    /// A masked client frame, as a browser would send it.
    private func clientFrame(opcode: UInt8, _ payload: [UInt8], fin: Bool = true, rsv: UInt8 = 0,
                             key: [UInt8]? = [0x37, 0xFA, 0x21, 0x3D]) -> [UInt8] {
        var bytes: [UInt8] = [(fin ? 0x80 : 0) | (rsv << 4) | opcode]
        let maskBit: UInt8 = key == nil ? 0 : 0x80
        if payload.count < 126 {
            bytes.append(maskBit | UInt8(payload.count))
        } else if payload.count <= 0xFFFF {
            bytes.append(maskBit | 126)
            bytes += [UInt8(payload.count >> 8), UInt8(payload.count & 0xFF)]
        } else {
            bytes.append(maskBit | 127)
            let length = UInt64(payload.count)
            for shift in stride(from: 56, through: 0, by: -8) {
                bytes.append(UInt8(truncatingIfNeeded: length >> UInt64(shift)))
            }
        }
        guard let key else { return bytes + payload }
        return bytes + key + payload.enumerated().map { $0.element ^ key[$0.offset % 4] }
    }

    private func readAll(_ chunks: [[UInt8]], maxFrameSize: Int = 1 << 20) throws -> [WebSocketFrameReader.Frame] {
        var reader = WebSocketFrameReader(maxFrameSize: maxFrameSize)
        var frames: [WebSocketFrameReader.Frame] = []
        for chunk in chunks {
            try reader.read(ByteBuffer(bytes: chunk), allocator: ByteBufferAllocator()) { frames.append($0) }
        }
        return frames
    }

    @Test func rfcExampleMaskedHelloIsUnmasked() throws {
        // RFC 6455 §5.7: a single-frame masked text message containing "Hello".
        let frames = try readAll([[0x81, 0x85, 0x37, 0xFA, 0x21, 0x3D, 0x7F, 0x9F, 0x4D, 0x51, 0x58]])
        #expect(frames.count == 1)
        #expect(frames[0].fin && frames[0].isMasked && frames[0].opcode == 0x1)
        #expect(String(buffer: frames[0].payload) == "Hello")
    }

    @Test func aFrameSplitAtEveryByteReadsTheSame() throws {
        let payload = Array("42[\"say\",{\"text\":\"héllo wörld\"}]".utf8)
        let bytes = clientFrame(opcode: 0x1, payload) + clientFrame(opcode: 0x9, [1, 2])
        for cut in 0...bytes.count {
            let frames = try readAll([Array(bytes[..<cut]), Array(bytes[cut...])])
            #expect(frames.map(\.opcode) == [0x1, 0x9], "cut at \(cut)")
            #expect(frames.first.map { Array($0.payload.readableBytesView) } == payload, "cut at \(cut)")
        }
    }

    @Test func sixteenAndSixtyFourBitLengthsAreRead() throws {
        for size in [125, 126, 65_535, 65_536, 70_000] {
            let payload = (0..<size).map { UInt8($0 & 0xFF) }
            let frames = try readAll([clientFrame(opcode: 0x2, payload)])
            #expect(frames.count == 1 && frames[0].payload.readableBytes == size, "size \(size)")
            #expect(Array(frames[0].payload.readableBytesView) == payload, "size \(size)")
        }
    }

    @Test func unmaskedFramesAndReservedBitsAreReportedForTheHandlerToRefuse() throws {
        let frames = try readAll([clientFrame(opcode: 0x1, [0x61], key: nil), clientFrame(opcode: 0x1, [0x62], rsv: 0b100)])
        #expect(frames.map(\.isMasked) == [false, true])
        #expect(frames.map(\.reservedBits) == [0, 4])
    }

    @Test func aFrameOverTheLimitIsRefusedFromItsHeaderAlone() {
        // Only the header: the reader must not wait for 10 MB before refusing.
        let header = Array(clientFrame(opcode: 0x1, [UInt8](repeating: 0x61, count: 70_000)).prefix(14))
        #expect(throws: WebSocketFrameReader.Failure.frameTooLarge) { try readAll([header], maxFrameSize: 65_536) }
    }

    @Test func aLengthWithTheTopBitSetIsAProtocolViolation() {
        let bytes: [UInt8] = [0x81, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 5, 1, 2, 3, 4]
        #expect(throws: WebSocketFrameReader.Failure.self) { try readAll([bytes]) }
    }

    @Test func fragmentedOrLongControlFramesAreProtocolViolations() {
        #expect(throws: WebSocketFrameReader.Failure.self) { try readAll([clientFrame(opcode: 0x9, [1], fin: false)]) }
        #expect(throws: WebSocketFrameReader.Failure.self) {
            try readAll([clientFrame(opcode: 0x8, [UInt8](repeating: 0, count: 126))])
        }
    }

    @Test func bytesOfAnUnfinishedFrameAreKeptAndCopied() throws {
        var reader = WebSocketFrameReader(maxFrameSize: 1024)
        let bytes = clientFrame(opcode: 0x1, Array("hello".utf8))
        var got: [String] = []
        try reader.read(ByteBuffer(bytes: bytes.prefix(4)), allocator: ByteBufferAllocator()) { got.append(String(buffer: $0.payload)) }
        #expect(got.isEmpty && reader.bufferedBytes == 4)
        try reader.read(ByteBuffer(bytes: bytes.dropFirst(4)), allocator: ByteBufferAllocator()) { got.append(String(buffer: $0.payload)) }
        #expect(got == ["hello"] && reader.bufferedBytes == 0)
    }

    @Test func aFrameTricklingInIsGrownInPlaceNotCopiedOnEveryRead() throws {
        // 200 KB in 100-byte reads: copying the kept bytes on each read moved them to new storage
        // 2,000 times (n²/2 bytes copied: seconds of an event loop for a 1 MB frame); growing
        // them in place moves them only when the buffer doubles.
        var reader = WebSocketFrameReader(maxFrameSize: 1 << 20)
        let payload = (0..<200_000).map { UInt8($0 & 0xFF) }
        let bytes = clientFrame(opcode: 0x2, payload)
        var frames: [WebSocketFrameReader.Frame] = []
        var moves = 0
        var storage: UInt?
        for start in stride(from: 0, to: bytes.count, by: 100) {
            try reader.read(ByteBuffer(bytes: bytes[start..<min(start + 100, bytes.count)]), allocator: ByteBufferAllocator()) { frames.append($0) }
            let now = reader.unfinished?.withVeryUnsafeBytes { UInt(bitPattern: $0.baseAddress) }
            if now != storage { moves += 1 }
            storage = now
        }
        #expect(frames.count == 1 && frames.first.map { Array($0.payload.readableBytesView) } == payload)
        #expect(reader.bufferedBytes == 0)
        #expect(moves < 50, "kept bytes moved to new storage \(moves) times in \(bytes.count / 100) reads")
    }

    @Test func bytesAfterAFrameAreKeptWhenTheyArriveWithItsEnd() throws {
        var reader = WebSocketFrameReader(maxFrameSize: 1024)
        let bytes = clientFrame(opcode: 0x1, Array("hello".utf8)) + clientFrame(opcode: 0x1, Array("world".utf8))
        var got: [String] = []
        var buffered: [Int] = []
        for chunk in [bytes[..<3], bytes[3..<14], bytes[14...]] {
            try reader.read(ByteBuffer(bytes: chunk), allocator: ByteBufferAllocator()) { got.append(String(buffer: $0.payload)) }
            buffered.append(reader.bufferedBytes)
        }
        #expect(got == ["hello", "world"] && buffered == [3, 3, 0])
    }

    @Test func randomBytesNeverTrapAndConsumeOnlyWhatIsThere() {
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<2_000 {
            let bytes = (0..<Int.random(in: 0...40, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            var buffer = ByteBuffer(bytes: bytes)
            while let frame = try? WebSocketFrameReader.cutFrame(from: &buffer, maxFrameSize: 30) {
                #expect(frame.payload.readableBytes <= 30)
            }
            #expect(buffer.readableBytes <= bytes.count)
        }
    }
}
