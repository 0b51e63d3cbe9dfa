/// The hash slot Redis Cluster stores a key (or routes a sharded pub/sub channel) in:
/// CRC16-XMODEM of the key's bytes mod 16384. When the key has a hash tag, only the tag is
/// hashed, exactly as Redis's `keyHashSlot` finds it: the first '{', then the first '}'
/// after it, and only when at least one byte lies between them; otherwise the whole key.
/// That is how `room{a}` and `{a}.x` land in one slot.
public enum RedisHashSlot {
    public static let count = 16384

    /// The slot of the key's UTF-8 bytes (room ids are UTF-8 and go to Redis as such).
    public static func of(_ key: String) -> Int {
        var key = key
        return key.withUTF8 { of(bytes: $0) }
    }

    /// The slot of a key given as raw bytes (a bulk string as Redis sees it).
    public static func of<Bytes: Collection>(bytes key: Bytes) -> Int where Bytes.Element == UInt8 {
        if let open = key.firstIndex(of: UInt8(ascii: "{")) {
            let afterOpen = key.index(after: open)
            if let close = key[afterOpen...].firstIndex(of: UInt8(ascii: "}")), close != afterOpen {
                return Int(crc16(key[afterOpen..<close])) & (count - 1)
            }
        }
        return Int(crc16(key)) & (count - 1)
    }

    /// CRC16-CCITT as XMODEM uses it (polynomial 0x1021, initial value 0, no reflection, no
    /// final XOR): the checksum the Redis Cluster specification names. "123456789" → 0x31C3.
    public static func crc16<Bytes: Sequence>(_ bytes: Bytes) -> UInt16 where Bytes.Element == UInt8 {
        var crc: UInt16 = 0
        for byte in bytes {
            crc = (crc << 8) ^ table[Int(UInt8(truncatingIfNeeded: crc >> 8) ^ byte)]
        }
        return crc
    }

    /// The CRC of each byte value shifted through the polynomial, so the loop above takes a
    /// byte per step instead of a bit.
    private static let table: [UInt16] = (0..<256).map { byte in
        var crc = UInt16(byte) << 8
        for _ in 0..<8 {
            crc = crc & 0x8000 != 0 ? (crc << 1) ^ 0x1021 : crc << 1
        }
        return crc
    }
}
