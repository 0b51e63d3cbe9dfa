/// The body of an Engine.IO v4 long-polling request or response: packets joined by the
/// record separator 0x1E, binary packets as `b<base64>`.
public enum PollingPayload {
    public static let separator: Character = "\u{1E}"

    public static func encode(_ packets: [EnginePacket]) -> String {
        packets.map { $0.encodedForPolling() }.joined(separator: String(separator))
    }

    /// Decodes a POST body. `maxPackets` bounds the work one request can cause.
    public static func decode(_ body: String, maxPackets: Int = 10_000) throws(EngineIOError) -> [EnginePacket] {
        guard !body.isEmpty else { throw .emptyPacket }
        var packets: [EnginePacket] = []
        for part in body.split(separator: separator, omittingEmptySubsequences: false) {
            if packets.count == maxPackets { throw .tooManyPackets(limit: maxPackets) }
            packets.append(try EnginePacket.decode(pollingPart: part))
        }
        return packets
    }
}
