import NIOCore
import Testing
@testable import MeshFanout

/// Every frame type against bytes written by hand from the wire format:
/// `u32 length | u8 type | body`, big-endian, strings as `u16 length + UTF-8`.
@Suite struct MeshFrameCodecTests {
    static let nonceHex = "000102030405060708090A0B0C0D0E0F 101112131415161718191A1B1C1D1E1F"
    static let proofHex = String(repeating: "AB", count: 32)

    @Test func helloEncodesVersionNodeEpochAndNonce() {
        let frame = MeshFrame.hello(MeshHello(node: "a1", epoch: 0x0102_0304_0506_0708, nonce: nonceA))
        // length 46 = type 1 + version 1 + string 2+2 + epoch 8 + nonce 32
        #expect(wire(frame) == hex("0000002E 01 01 0002 6131 0102030405060708" + Self.nonceHex))
    }

    @Test func helloCarriesTheCurrentProtocolVersionByDefault() {
        #expect(MeshHello.protocolVersion == 1)
        #expect(MeshHello(node: "x", epoch: 1, nonce: nonceA).version == 1)
        #expect(MeshHello.nonceLength == 32)
    }

    @Test func authEncodesProofThenResumeEpochThenResumeSequence() {
        let frame = MeshFrame.auth(MeshAuth(proof: Array(repeating: 0xAB, count: 32), resumeEpoch: 7, resumeSequence: 9))
        // length 49 = type 1 + proof 32 + two u64
        #expect(wire(frame) == hex("00000031 02" + Self.proofHex + "0000000000000007 0000000000000009"))
    }

    @Test func snapshotEncodesCountThenEachRoom() {
        #expect(wire(.snapshot(["r1", "abc"])) == hex("0000000E 03 00000002 0002 7231 0003 616263"))
    }

    @Test func emptySnapshotIsAZeroCount() {
        #expect(wire(.snapshot([])) == hex("00000005 03 00000000"))
    }

    @Test func subEncodesTheRoomName() {
        #expect(wire(.sub("r1")) == hex("00000005 04 0002 7231"))
    }

    @Test func unsubEncodesTheRoomName() {
        #expect(wire(.unsub("r1")) == hex("00000005 05 0002 7231"))
    }

    @Test func roomNamesAreUTF8WithAByteCount() {
        #expect(wire(.sub("é")) == hex("00000005 04 0002 C3A9"))
        #expect(wire(.unsub("部屋")) == hex("00000009 05 0006 E983A8 E5B18B"))
    }

    @Test func pubEncodesSequenceRoomAndPayloadAsTheRestOfTheFrame() {
        let frame = MeshFrame.pub(sequence: 7, room: "r1", payload: buffer("2[]"))
        #expect(wire(frame) == hex("00000010 06 0000000000000007 0002 7231 325B5D"))
    }

    @Test func pubWithEmptyRoomAndPayloadIsJustTheHeader() {
        let frame = MeshFrame.pub(sequence: 1, room: "", payload: buffer([]))
        #expect(wire(frame) == hex("0000000B 06 0000000000000001 0000"))
    }

    @Test func pubWritesOnlyTheReadableBytesOfItsPayload() {
        var payload = buffer("xx2[]")
        payload.moveReaderIndex(forwardBy: 2)
        #expect(wire(.pub(sequence: 7, room: "r1", payload: payload)) == hex("00000010 06 0000000000000007 0002 7231 325B5D"))
    }

    @Test func ackPingAndPongEncodeOneU64() {
        #expect(wire(.ack(0x0102)) == hex("00000009 07 0000000000000102"))
        #expect(wire(.ping(.max)) == hex("00000009 08 FFFFFFFFFFFFFFFF"))
        #expect(wire(.pong(1)) == hex("00000009 09 0000000000000001"))
    }

    @Test func goodbyeEncodesTheReason() {
        #expect(wire(.goodbye("bye")) == hex("00000006 0A 0003 627965"))
    }

    @Test func typeBytesAreOneToSixteen() {
        #expect(MeshFrame.FrameType.allCases.map(\.rawValue) == Array(1...16))
        for frame in sampleFrames {
            #expect(wire(frame)[4] == frame.type.rawValue)
        }
    }

    @Test func lengthPrefixCountsTypeByteAndBody() {
        for frame in sampleFrames {
            let bytes = wire(frame)
            let length = bytes.prefix(4).reduce(0) { $0 << 8 | Int($1) }
            #expect(length == bytes.count - 4, "\(frame)")
        }
    }

    @Test func encodeAppendsAfterExistingBytes() {
        var out = buffer("XY")
        MeshFrameCodec.encode(.sub("r1"), into: &out)
        MeshFrameCodec.encode(.ack(1), into: &out)
        let expected = Array("XY".utf8) + hex("00000005 04 0002 7231") + hex("00000009 07 0000000000000001")
        #expect(out.getBytes(at: out.readerIndex, length: out.readableBytes) == expected)
    }

    @Test func encoderHandlerWritesTheSameBytesAsTheCodec() throws {
        for frame in sampleFrames {
            var out = ByteBufferAllocator().buffer(capacity: 0)
            try MeshFrameEncoder().encode(data: frame, out: &out)
            #expect(out.getBytes(at: 0, length: out.readableBytes) == wire(frame))
        }
    }

    @Test(arguments: sampleFrames)
    func everyFrameRoundTrips(_ frame: MeshFrame) throws {
        #expect(try MeshFrameCodec.decode(body: buffer(body(frame))) == frame)
        var stream = buffer(wire(frame))
        #expect(try MeshFrameDecoder(maxFrameLength: 1 << 20).next(from: &stream) == frame)
        #expect(stream.readableBytes == 0)
    }

    @Test func decodedPubPayloadIsTheExactRestOfTheFrame() throws {
        let payload: [UInt8] = [0, 1, 2, 0xFF, 0x06, 0, 0, 0, 5]
        let frame = try MeshFrameCodec.decode(body: buffer(hex("06 0000000000000003 0001 78") + payload))
        guard case .pub(let sequence, let room, let decodedPayload) = frame else {
            Issue.record("not a PUB: \(frame)")
            return
        }
        #expect(sequence == 3)
        #expect(room == "x")
        #expect(decodedPayload.getBytes(at: decodedPayload.readerIndex, length: decodedPayload.readableBytes) == payload)
    }

    /// Product requirement: at most 16 bytes of framing per message per link, room name aside.
    @Test func pubFramingOverheadIsFifteenBytesPlusTheRoomName() {
        for room in ["", "r1", "a-rather-long-room-name-0123456789", "部屋"] {
            for size in [0, 1, 100, 65_536, 1_000_000] {
                let payload = buffer([UInt8](repeating: 0x61, count: size))
                let overhead = wire(.pub(sequence: .max, room: room, payload: payload)).count - size
                #expect(overhead == 15 + room.utf8.count)
                #expect(overhead - room.utf8.count <= 16)
            }
        }
    }

    @Test func stringLongerThanU16IsCutToTheMaximum() throws {
        let long = String(repeating: "a", count: 70_000)
        let decoded = try MeshFrameCodec.decode(body: buffer(body(.sub(long))))
        #expect(decoded == .sub(String(repeating: "a", count: MeshFrameCodec.maxStringLength)))
    }

    @Test func stringOfExactlyU16MaxIsKeptWhole() throws {
        let exact = String(repeating: "b", count: 65_535)
        #expect(try MeshFrameCodec.decode(body: buffer(body(.unsub(exact)))) == .unsub(exact))
    }

    /// The codec cuts over-long strings at a character boundary: a multi-byte character that
    /// straddles byte 65,535 is dropped whole, so the frame stays decodable.
    @Test(arguments: ["é", "€", "🙂"])
    func overlongStringIsCutAtACharacterBoundary(_ straddling: String) throws {
        let text = String(repeating: "a", count: 65_534) + straddling + "tail"
        let decoded = try MeshFrameCodec.decode(body: buffer(body(.sub(text))))
        guard case .sub(let room) = decoded else { throw MeshFrameError.invalidField("not a SUB") }
        #expect(room.utf8.count <= MeshFrameCodec.maxStringLength)
        #expect(text.hasPrefix(room))
    }

    @Test func goodbyeReasonIsCutToAbout1KiBAndStaysDecodable() throws {
        let ascii = try MeshFrameCodec.decode(body: buffer(body(.goodbye(String(repeating: "x", count: 5000)))))
        #expect(ascii == .goodbye(String(repeating: "x", count: 1024)))
        let wide = try MeshFrameCodec.decode(body: buffer(body(.goodbye(String(repeating: "€", count: 1000)))))
        guard case .goodbye(let reason) = wide else { Issue.record("not a GOODBYE"); return }
        #expect(reason.hasPrefix(String(repeating: "€", count: 341)))
        #expect(reason.utf8.count <= 1024 + 2)
    }

    @Test func errorsDescribeThemselves() {
        #expect(MeshFrameError.frameTooLarge(length: 10, limit: 5).description == "frame of 10 bytes exceeds the limit of 5")
        #expect(MeshFrameError.unknownType(99).description == "unknown frame type 99")
        #expect(MeshFrameError.truncated(.pub).description == "pub frame is truncated")
        #expect(MeshFrameError.trailingBytes(.ack).description == "ack frame has trailing bytes")
        #expect(MeshFrameError.invalidUTF8(.sub).description == "sub frame holds a string that is not UTF-8")
        #expect(MeshFrameError.emptyFrame.description == "frame without a type byte")
    }
}
