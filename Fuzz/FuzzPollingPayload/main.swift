import EngineIO
import FuzzSupport

// A long-polling POST body (`PollingPayload.decode`): packets joined by 0x1E, binary ones as
// `b<base64>`, with a bound on the packet count. The first input byte picks that bound.
// Promises: one packet per 0x1E-separated part (the separator is a grapheme of its own, so no
// combining mark can hide it), never more than the bound, errors instead of traps, and
// encode(decode(body)) decodes to the same packets (byte for byte when there is no binary).

fuzz { input in
    var reader = FuzzReader(input)
    let limits = [1, 2, 3, 16, 10_000]
    let maxPackets = limits[Int(reader.byte()) % limits.count]
    let bytes = reader.rest()
    guard let body = String(validating: bytes, as: UTF8.self) else { return }
    let partCount = bytes.count(where: { $0 == 0x1E }) + 1
    do throws(EngineIOError) {
        let packets = try PollingPayload.decode(body, maxPackets: maxPackets)
        expect(packets.count == partCount, "\(packets.count) packets from \(partCount) parts")
        expect(packets.count <= maxPackets, "\(packets.count) packets over the bound \(maxPackets)")
        let encoded = PollingPayload.encode(packets)
        expect(try! PollingPayload.decode(encoded, maxPackets: maxPackets) == packets, "round trip of \(body.debugDescription)")
        if !packets.contains(where: \.isBinary) {
            expect(encoded == body, "text-only body not re-encoded byte for byte")
        }
    } catch {
        switch error {
        case .tooManyPackets(let limit):
            expect(limit == maxPackets && partCount > maxPackets, "tooManyPackets with \(partCount) parts, bound \(maxPackets)")
        case .emptyPacket, .unknownPacketType, .invalidBase64:
            break
        case .payloadTooLarge:
            expect(false, "decode never checks the payload size, the HTTP layer does")
        }
    }
}
