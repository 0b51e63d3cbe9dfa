import ChatCore
import NIOCore
import Testing
@testable import MeshFanout

/// The relay frames (types 13 to 16, docs/RELAY.md) against bytes written by hand, and every
/// bound their decoder enforces.
@Suite struct MeshRelayFrameCodecTests {
    static let samples: [MeshFrame] = [
        .relayRequest(id: 1, request: RelayedRequest(kind: .get, sid: "AbCdEfGhIjKlMnOpQrSt", origin: "https://chat.example",
                                                     body: buffer([]))),
        .relayRequest(id: .max, request: RelayedRequest(kind: .post, sid: String(repeating: "s", count: 64),
                                                        origin: String(repeating: "o", count: 1024), body: buffer("4:40"))),
        .relayRequest(id: 2, request: RelayedRequest(kind: .webSocket, sid: "s", origin: nil, body: buffer([0, 0xFF]))),
        .relayReply(id: 1, reply: RelayReply(status: 200, contentType: "text/plain; charset=UTF-8", body: buffer("ok"))),
        .relayReply(id: 0, reply: RelayReply(status: 100, contentType: "", body: buffer([]))),
        .relayReply(id: 3, reply: RelayReply(status: 599, contentType: String(repeating: "c", count: 256),
                                             body: buffer(#"{"code":1,"message":"Session ID unknown"}"#))),
        .relayFrame(id: 5, kind: .text, payload: buffer("2probe")),
        .relayFrame(id: 6, kind: .binary, payload: buffer([])),
        .relayFrame(id: .max, kind: .framed, payload: buffer([0x81, 0x06] + Array("3probe".utf8))),
        .relayClose(id: 0, code: 0),
        .relayClose(id: 9, code: 4404),
    ]

    @Test func relayFramesAreTypesThirteenToSixteen() {
        #expect(MeshFrame.FrameType.relayRequest.rawValue == 13)
        #expect(MeshFrame.FrameType.relayReply.rawValue == 14)
        #expect(MeshFrame.FrameType.relayFrame.rawValue == 15)
        #expect(MeshFrame.FrameType.relayClose.rawValue == 16)
    }

    @Test func relayRequestEncodesIdKindSidOriginThenTheBody() throws {
        let frame = MeshFrame.relayRequest(id: 7, request: RelayedRequest(kind: .post, sid: "s1", origin: "o", body: buffer("40")))
        #expect(wire(frame) == hex("00000013 0D 0000000000000007 02 0002 7331 0001 6F 3430"))
        #expect(try MeshFrameCodec.decode(body: buffer(hex("0D 0000000000000007 02 0002 7331 0001 6F 3430"))) == frame)
    }

    @Test func relayRequestWithoutOriginHasAnEmptyOneAndDecodesAsNil() throws {
        let frame = MeshFrame.relayRequest(id: 2, request: RelayedRequest(kind: .webSocket, sid: "s1", origin: nil, body: buffer([])))
        #expect(wire(frame) == hex("00000010 0D 0000000000000002 03 0002 7331 0000"))
        let empty = MeshFrame.relayRequest(id: 2, request: RelayedRequest(kind: .webSocket, sid: "s1", origin: "", body: buffer([])))
        #expect(wire(empty) == wire(frame))
        #expect(try MeshFrameCodec.decode(body: buffer(hex("0D 0000000000000002 03 0002 7331 0000"))) == frame)
    }

    @Test func relayReplyEncodesIdStatusContentTypeThenTheBody() throws {
        let frame = MeshFrame.relayReply(id: 7, reply: RelayReply(status: 200, contentType: "text/plain", body: buffer("ok")))
        #expect(wire(frame) == hex("00000019 0E 0000000000000007 00C8 000A 746578742F706C61696E 6F6B"))
        #expect(try MeshFrameCodec.decode(body: buffer(hex("0E 0000000000000007 00C8 000A 746578742F706C61696E 6F6B"))) == frame)
    }

    @Test func relayFrameEncodesIdKindThenThePayload() throws {
        let frame = MeshFrame.relayFrame(id: 3, kind: .framed, payload: buffer(hex("8102 6869")))
        #expect(wire(frame) == hex("0000000E 0F 0000000000000003 03 8102 6869"))
        #expect(try MeshFrameCodec.decode(body: buffer(hex("0F 0000000000000003 01"))) == .relayFrame(id: 3, kind: .text, payload: buffer([])))
    }

    @Test func relayCloseEncodesIdAndCode() throws {
        #expect(wire(.relayClose(id: 3, code: 4404)) == hex("0000000B 10 0000000000000003 1134"))
        #expect(try MeshFrameCodec.decode(body: buffer(hex("10 0000000000000003 03F3"))) == .relayClose(id: 3, code: 1011))
    }

    @Test func everySampleRoundTrips() throws {
        for frame in Self.samples {
            #expect(try MeshFrameCodec.decode(body: buffer(body(frame))) == frame, "\(frame.type)")
        }
    }

    @Test func samplesSplitAnywhereDecodeTheSame() throws {
        let stream = Self.samples.flatMap(wire)
        let decoder = MeshFrameDecoder(maxFrameLength: 1 << 16)
        for split in [1, 7, 13, 64, stream.count - 1] {
            var whole = buffer(Array(stream.prefix(split)))
            var frames = try drain(decoder, &whole)
            whole.writeBytes(stream.dropFirst(split))
            frames += try drain(decoder, &whole)
            #expect(frames == Self.samples, "split at \(split)")
            #expect(whole.readableBytes == 0)
        }
    }

    @Test func everyTruncationIsRefused() {
        for frame in Self.samples {
            let bytes = body(frame)
            // The bytes up to the fixed fields and strings; what follows them is the body.
            let fixed: Int
            switch frame {
            case .relayRequest(_, let request):
                fixed = 1 + 8 + 1 + 2 + request.sid.utf8.count + 2 + (request.origin?.utf8.count ?? 0)
            case .relayReply(_, let reply): fixed = 1 + 8 + 2 + 2 + reply.contentType.utf8.count
            case .relayFrame: fixed = 1 + 8 + 1
            default: fixed = bytes.count
            }
            for cut in 1..<fixed {
                #expect(decodeError(Array(bytes.prefix(cut))) == .truncated(frame.type), "\(frame.type) cut at \(cut)")
            }
        }
    }

    @Test func relayCloseWithTrailingBytesIsRefused() {
        #expect(decodeError(hex("10 0000000000000003 1134 00")) == .trailingBytes(.relayClose))
    }

    @Test func unknownKindsAreRefused() {
        for kind in [0, 4, 255] as [UInt8] {
            #expect(decodeError(hex("0D 0000000000000001") + [kind] + hex("0002 7331 0000"))
                == .invalidField("relay frame: request kind \(kind) (1 GET, 2 POST, 3 WebSocket)"))
            #expect(decodeError(hex("0F 0000000000000001") + [kind] + hex("6869"))
                == .invalidField("relay frame: frame kind \(kind) (1 text, 2 binary, 3 framed)"))
        }
    }

    @Test func sidOfOneToSixtyFourBytesOnly() {
        #expect(decodeError(hex("0D 0000000000000001 01 0000 0000")) == .invalidField("relay frame: sid of 0 bytes (1 to 64)"))
        let long = body(.relayRequest(id: 1, request: RelayedRequest(kind: .get, sid: String(repeating: "s", count: 64),
                                                                      origin: nil, body: buffer([]))))
        #expect(decodeError(long) == nil)
        // 65 bytes: written by hand, since the encoder cuts the sid to 64.
        #expect(decodeError(hex("0D 0000000000000001 01 0041") + Array(repeating: 0x73, count: 65) + hex("0000"))
            == .invalidField("relay frame: sid of 65 bytes (1 to 64)"))
        #expect(!MeshFrameCodec.canEncode(RelayedRequest(kind: .get, sid: String(repeating: "s", count: 65), origin: nil,
                                                         body: buffer([]))))
        #expect(!MeshFrameCodec.canEncode(RelayedRequest(kind: .get, sid: "", origin: nil, body: buffer([]))))
    }

    @Test func originOfMoreThan1024BytesIsRefusedAndNotEncodable() {
        #expect(decodeError(hex("0D 0000000000000001 01 0002 7331 0401") + Array(repeating: 0x6F, count: 1025))
            == .invalidField("relay frame: origin of 1025 bytes (at most 1024)"))
        #expect(MeshFrameCodec.canEncode(RelayedRequest(kind: .get, sid: "s1", origin: String(repeating: "o", count: 1024),
                                                        body: buffer([]))))
        #expect(!MeshFrameCodec.canEncode(RelayedRequest(kind: .get, sid: "s1", origin: String(repeating: "o", count: 1025),
                                                         body: buffer([]))))
    }

    @Test func contentTypeOfMoreThan256BytesIsRefusedAndCutWhenWritten() throws {
        #expect(decodeError(hex("0E 0000000000000001 00C8 0101") + Array(repeating: 0x63, count: 257))
            == .invalidField("relay frame: content type of 257 bytes (at most 256)"))
        // A writer cuts it at the last whole character that fits: 255 bytes, not half an "é".
        let long = String(repeating: "c", count: 255) + "é"
        let decoded = try MeshFrameCodec.decode(body: buffer(body(.relayReply(id: 1, reply: RelayReply(status: 200, contentType: long,
                                                                                                      body: buffer("x"))))))
        #expect(decoded == .relayReply(id: 1, reply: RelayReply(status: 200, contentType: String(repeating: "c", count: 255),
                                                               body: buffer("x"))))
    }

    @Test func statusOutsideOneHundredToFiveNinetyNineIsRefused() {
        #expect(decodeError(hex("0E 0000000000000001 0063 0000")) == .invalidField("relay frame: status 99 (100 to 599)"))
        #expect(decodeError(hex("0E 0000000000000001 0258 0000")) == .invalidField("relay frame: status 600 (100 to 599)"))
        #expect(decodeError(hex("0E 0000000000000001 0000 0000")) == .invalidField("relay frame: status 0 (100 to 599)"))
    }

    @Test func stringsThatAreNotUTF8AreRefused() {
        #expect(decodeError(hex("0D 0000000000000001 01 0002 C328 0000")) == .invalidUTF8(.relayRequest))
        #expect(decodeError(hex("0D 0000000000000001 01 0002 7331 0001 FF")) == .invalidUTF8(.relayRequest))
        #expect(decodeError(hex("0E 0000000000000001 00C8 0001 FF")) == .invalidUTF8(.relayReply))
    }
}
