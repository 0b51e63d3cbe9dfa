/// Standard base64 (RFC 4648, with padding), as Engine.IO uses for binary packets in polling
/// payloads. Written here so the codec has no Foundation dependency and stays fuzzable.
public enum Base64 {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    private static let reverse: [UInt8] = {
        var table = [UInt8](repeating: 0xFF, count: 256)
        for (index, byte) in alphabet.enumerated() { table[Int(byte)] = UInt8(index) }
        return table
    }()

    public static func encode<Bytes: Collection>(_ bytes: Bytes) -> String where Bytes.Element == UInt8 {
        var out = [UInt8]()
        out.reserveCapacity((bytes.count + 2) / 3 * 4)
        var iterator = bytes.makeIterator()
        while let b0 = iterator.next() {
            let b1 = iterator.next()
            let b2 = iterator.next()
            out.append(alphabet[Int(b0 >> 2)])
            out.append(alphabet[Int((b0 & 0x03) << 4 | (b1 ?? 0) >> 4)])
            out.append(b1.map { alphabet[Int(($0 & 0x0F) << 2 | (b2 ?? 0) >> 6)] } ?? UInt8(ascii: "="))
            out.append(b2.map { alphabet[Int($0 & 0x3F)] } ?? UInt8(ascii: "="))
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Returns nil for anything that is not canonical padded base64.
    public static func decode<Bytes: Collection>(_ text: Bytes) -> [UInt8]? where Bytes.Element == UInt8 {
        let input = Array(text)
        guard input.count % 4 == 0 else { return nil }
        var out = [UInt8]()
        out.reserveCapacity(input.count / 4 * 3)
        var index = 0
        while index < input.count {
            let isLast = index + 4 == input.count
            let c0 = reverse[Int(input[index])], c1 = reverse[Int(input[index + 1])]
            let p2 = input[index + 2] == UInt8(ascii: "="), p3 = input[index + 3] == UInt8(ascii: "=")
            let c2 = p2 ? 0 : reverse[Int(input[index + 2])]
            let c3 = p3 ? 0 : reverse[Int(input[index + 3])]
            guard c0 != 0xFF, c1 != 0xFF, c2 != 0xFF, c3 != 0xFF else { return nil }
            guard !p2 || p3, !(p2 || p3) || isLast else { return nil }
            out.append(c0 << 2 | c1 >> 4)
            if !p2 { out.append((c1 & 0x0F) << 4 | c2 >> 2) }
            if !p3 { out.append((c2 & 0x03) << 6 | c3) }
            index += 4
        }
        return out
    }
}
