import Testing
@testable import RedisFanout

/// The slot of a key, as Redis Cluster computes it: every expected slot below is what a real
/// redis-server 7.0.15 (cluster mode, loopback) answered to `CLUSTER KEYSLOT <key>`.
@Suite struct RedisHashSlotTests {
    // MARK: The checksum

    @Test func crc16IsXmodemAsTheClusterSpecGivesIt() {
        // The Redis Cluster specification's test vector: CRC16 of "123456789" is 0x31C3.
        #expect(RedisHashSlot.crc16(Array("123456789".utf8)) == 0x31C3)
        #expect(RedisHashSlot.crc16([UInt8]()) == 0)
        // XMODEM has no final XOR and init 0: one zero byte stays 0, 'A' is 0x58E5.
        #expect(RedisHashSlot.crc16([0]) == 0)
        #expect(RedisHashSlot.crc16(Array("A".utf8)) == 0x58E5)
    }

    @Test func slotIsTheChecksumModulo16384() {
        #expect(RedisHashSlot.count == 16384)
        #expect(RedisHashSlot.of("123456789") == 0x31C3 % 16384)
        #expect(RedisHashSlot.of("123456789") == 12739)
    }

    // MARK: Keys without a hash tag

    @Test(arguments: [
        ("", 0), ("foo", 12182), ("bar", 5061), ("hello", 866),
        ("room:general", 11563), ("chatmesh:room:lobby", 4720),
        (String(repeating: "x", count: 300), 11216),
    ])
    func plainKeysHashWhole(key: String, slot: Int) {
        #expect(RedisHashSlot.of(key) == slot, "CLUSTER KEYSLOT \(key.debugDescription)")
    }

    // MARK: Hash tags

    @Test func keysWithTheSameTagShareASlot() {
        #expect(RedisHashSlot.of("{user1000}.following") == 3443)
        #expect(RedisHashSlot.of("{user1000}.followers") == 3443)
        #expect(RedisHashSlot.of("foo{bar}{zap}") == 5061, "only the first tag counts: the slot of 'bar'")
        #expect(RedisHashSlot.of("{a}") == RedisHashSlot.of("a"))
        #expect(RedisHashSlot.of("{a}") == 15495)
    }

    @Test(arguments: [
        // An empty tag right after the first '{' means no tag: the whole key is hashed.
        ("foo{}{bar}", 8363), ("{}", 15257), ("{}x", 10595), ("room{}", 7526),
        // The tag ends at the first '}' after the first '{': "{bar" is hashed here.
        ("foo{{bar}}zap", 4015),
        // No closing brace, or braces in the wrong order: the whole key.
        ("{", 4092), ("}", 12090), ("}{", 12793), ("a{b", 13340),
    ])
    func tagEdgeCasesAsRedisReadsThem(key: String, slot: Int) {
        #expect(RedisHashSlot.of(key) == slot, "CLUSTER KEYSLOT \(key.debugDescription)")
    }

    @Test func emptyTagIsNotTheSameAsTheTagOfTheRest() {
        // "foo{}{bar}" is not routed by "bar" (the first tag is empty, so there is none).
        #expect(RedisHashSlot.of("foo{}{bar}") != RedisHashSlot.of("bar"))
        #expect(RedisHashSlot.of("foo{{bar}}zap") == RedisHashSlot.of("{bar"))
    }

    // MARK: UTF-8 room ids and raw bytes

    @Test(arguments: [
        ("général", 7392), ("チャット", 3137), ("💬", 426), ("{💬}room", 426), ("Ünïcödé-room-42", 7118),
    ])
    func nonASCIIKeysHashTheirUTF8(key: String, slot: Int) {
        #expect(RedisHashSlot.of(key) == slot, "CLUSTER KEYSLOT \(key.debugDescription)")
        #expect(RedisHashSlot.of(bytes: Array(key.utf8)) == slot)
    }

    @Test func bytesThatAreNotUTF8HashAsBytes() {
        #expect(RedisHashSlot.of(bytes: [0xFF, 0x00, 0xFE]) == 434)
        #expect(RedisHashSlot.of(bytes: Array("a{".utf8) + [0xFF] + Array("}b".utf8)) == 7920)
        #expect(RedisHashSlot.of(bytes: [0x00]) == 0)
    }

    @Test func bridgedAndSubstringKeysGiveTheSameSlot() {
        // A String that is not stored contiguously as UTF-8 still hashes its UTF-8 bytes.
        let long = String(repeating: "é", count: 40) + "{tag}"
        #expect(RedisHashSlot.of(long) == RedisHashSlot.of("tag"))
        #expect(RedisHashSlot.of(bytes: "{user1000}.following".utf8) == 3443)
        #expect(RedisHashSlot.of(bytes: ArraySlice("xx{user1000}".utf8.dropFirst(2))) == 3443)
    }

    @Test func everySlotIsInRange() {
        for n in 0..<2000 {
            let slot = RedisHashSlot.of("room-\(n)")
            #expect((0..<RedisHashSlot.count).contains(slot))
        }
    }
}
