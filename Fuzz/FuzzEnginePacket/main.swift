import EngineIO
import FuzzSupport

// Engine.IO packets: a WebSocket text frame (`EnginePacket.decode(text:)`), one part of a
// polling payload (`decode(pollingPart:)`, text or `b<base64>`), and base64 itself.
// Promises: bad input is an `EngineIOError` naming the byte at fault; what decodes as text
// re-encodes to exactly the frame it came from; base64 round-trips every byte string.

fuzz { bytes in
    // Base64 over the raw bytes: encode then decode is the identity, at the expected length.
    let encoded = Base64.encode(bytes)
    expect(encoded.utf8.count == (bytes.count + 2) / 3 * 4, "base64 length of \(bytes.count) bytes")
    expect(Base64.decode(encoded.utf8) == bytes, "base64 round trip of \(bytes)")

    // Base64.decode on arbitrary bytes: nil, or bytes that re-encode to the same length and
    // decode again to themselves (the text may differ only in the unused low bits of its last
    // character, which the decoder ignores, like Node's Buffer.from(s, "base64")).
    if let decoded = Base64.decode(bytes) {
        let again = Base64.encode(decoded)
        expect(again.utf8.count == bytes.count, "base64 decode of \(bytes.count) bytes gave \(decoded.count)")
        expect(Base64.decode(again.utf8) == decoded, "base64 re-decode of \(decoded)")
    }

    // Text frames are UTF-8 by the time they reach the codec (WebSocket and the poll body are
    // validated first).
    guard let text = String(validating: bytes, as: UTF8.self) else { return }
    do throws(EngineIOError) {
        let packet = try EnginePacket.decode(text: text[...])
        expect(!packet.isBinary, "a text frame decoded as binary")
        expect(Array(packet.encodedForPolling().utf8) == bytes, "not re-encoded byte for byte: \(text.debugDescription)")
        expect(packet.encodedText() == packet.encodedForPolling(), "the WebSocket text form differs from the polling form")
    } catch {
        switch error {
        case .emptyPacket: expect(bytes.isEmpty, "emptyPacket for \(bytes.count) bytes")
        case .unknownPacketType(let byte): expect(byte == bytes.first && !(0x30...0x36).contains(byte), "wrong byte in \(error)")
        default: expect(false, "decode(text:) threw \(error)")
        }
    }

    do throws(EngineIOError) {
        let packet = try EnginePacket.decode(pollingPart: text[...])
        if bytes.first == UInt8(ascii: "b") {
            expect(packet.isBinary && packet.type == .message, "b-part did not decode as a binary message")
            guard case .binary(let decoded) = packet.payload else { return }
            expect(try! EnginePacket.decode(pollingPart: packet.encodedForPolling()[...]) == packet, "binary part round trip")
            expect(Base64.decode(bytes.dropFirst()) == decoded, "binary part is not base64 of the rest")
        } else {
            expect(Array(packet.encodedForPolling().utf8) == bytes, "text part not re-encoded byte for byte")
        }
    } catch {
        switch error {
        case .emptyPacket: expect(bytes.isEmpty, "emptyPacket for \(bytes.count) bytes")
        case .invalidBase64: expect(bytes.first == UInt8(ascii: "b") && Base64.decode(bytes.dropFirst()) == nil, "invalidBase64 for valid base64")
        case .unknownPacketType(let byte): expect(byte == bytes.first && byte != UInt8(ascii: "b"), "wrong byte in \(error)")
        default: expect(false, "decode(pollingPart:) threw \(error)")
        }
    }
}
