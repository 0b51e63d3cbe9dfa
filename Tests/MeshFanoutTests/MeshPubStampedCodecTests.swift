import NIOCore
import Testing
@testable import MeshFanout

/// PUB_STAMPED (type 11), the PUB of a recovery-on mesh, against bytes written by hand:
/// `u32 length | 0B | u64 link sequence | u64 origin sequence | string room | payload`.
@Suite struct MeshPubStampedCodecTests {
    @Test func pubStampedEncodesBothSequencesThenRoomThenPayload() {
        let frame = MeshFrame.pubStamped(sequence: 7, originSequence: 0x0102, room: "r1", payload: buffer("2[]"))
        // length 24 = type 1 + two u64 + string 2+2 + payload 3
        #expect(wire(frame) == hex("00000018 0B 0000000000000007 0000000000000102 0002 7231 325B5D"))
    }

    @Test func pubStampedWithEmptyRoomAndPayloadIsJustTheHeader() {
        let frame = MeshFrame.pubStamped(sequence: 1, originSequence: .max, room: "", payload: buffer([]))
        #expect(wire(frame) == hex("00000013 0B 0000000000000001 FFFFFFFFFFFFFFFF 0000"))
    }

    /// The origin sequence costs 8 bytes more than a PUB: 23 bytes plus the room name.
    @Test func pubStampedFramingIsEightBytesMoreThanAPub() {
        for room in ["", "r1", "部屋"] {
            let payload = buffer([UInt8](repeating: 0x61, count: 100))
            let stamped = wire(.pubStamped(sequence: 1, originSequence: 1, room: room, payload: payload)).count
            let plain = wire(.pub(sequence: 1, room: room, payload: payload)).count
            #expect(stamped - plain == 8)
            #expect(stamped - 100 == 23 + room.utf8.count)
        }
    }

    @Test func decodedPubStampedPayloadIsTheExactRestOfTheFrame() throws {
        let payload: [UInt8] = [0, 0x0B, 0xFF, 0, 0, 0, 9]
        let frame = try MeshFrameCodec.decode(body: buffer(hex("0B 0000000000000003 0000000000000009 0001 78") + payload))
        guard case .pubStamped(let sequence, let originSequence, let room, let decoded) = frame else {
            Issue.record("not a PUB_STAMPED: \(frame)")
            return
        }
        #expect(sequence == 3)
        #expect(originSequence == 9)
        #expect(room == "x")
        #expect(decoded.getBytes(at: decoded.readerIndex, length: decoded.readableBytes) == payload)
    }

    @Test func pubStampedCutAnywhereInItsFixedFieldsIsTruncated() {
        let bytes = hex("0B 0000000000000003 0000000000000009 0002 7231")
        for cut in 1..<bytes.count {
            #expect(decodeError(Array(bytes.prefix(cut))) == .truncated(.pubStamped), "cut at \(cut)")
        }
        #expect(decodeError(bytes) == nil)
    }

    @Test func pubStampedRoomThatIsNotUTF8IsRefused() {
        #expect(decodeError(hex("0B 0000000000000003 0000000000000009 0002 C328 325B5D")) == .invalidUTF8(.pubStamped))
    }

    @Test func pubStampedRoundTripsThroughTheStreamDecoder() throws {
        let frame = MeshFrame.pubStamped(sequence: 42, originSequence: 17, room: "🙂", payload: buffer("2[\"message\",{}]"))
        var stream = buffer(wire(frame) + wire(.ack(1)))
        let decoder = MeshFrameDecoder(maxFrameLength: 1 << 16)
        #expect(try drain(decoder, &stream) == [frame, .ack(1)])
        #expect(stream.readableBytes == 0)
    }

    @Test func pubStampedTypeByteIsEleven() {
        #expect(MeshFrame.FrameType.pubStamped.rawValue == 11)
        #expect(MeshFrameError.truncated(.pubStamped).description == "pubStamped frame is truncated")
    }
}
