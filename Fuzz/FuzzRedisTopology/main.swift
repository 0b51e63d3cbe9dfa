import ClusterConfig
import FuzzSupport
import NIOCore
import RedisFanout

// What a Redis Cluster node (or whatever answers at its address) sends about the cluster:
// `CLUSTER SLOTS` replies (`RedisClusterTopology.parse`) and `-MOVED` / `-ASK` error texts
// (`RedisRedirect.parse`, `RedisClusterErrorKind.classify`), after the RESP2 decoder. The first
// byte picks the address the reply is taken to come from (some not valid hosts at all); the
// rest is a RESP stream, every value of which is tried as both.
//
// Promises: never a trap; a topology maps every slot to the shard whose ranges hold it, covers
// every slot exactly when its ranges add up to 16384, and written back as a CLUSTER SLOTS reply
// parses to itself; a redirect has a slot 0-16383 and a port 1-65535, is classified as its kind,
// and written back as text parses to itself.
let askedHosts = ["127.0.0.1", "::1", "", "redis.example", "not a host", "?"]

func checkTopology(_ reply: RESPValue, askedHost: String) {
    guard case .success(let topology) = RedisClusterTopology.parse(clusterSlots: reply, askedHost: askedHost) else { return }
    var owned = 0
    var previousStart = -1
    for (index, shard) in topology.shards.enumerated() {
        expect(!shard.slots.isEmpty, "shard \(index) serves no slot")
        expect(shard.slots[0].lowerBound > previousStart, "shards not ordered by first slot")
        previousStart = shard.slots[0].lowerBound
        expect((1...65_535).contains(shard.primary.port), "primary port \(shard.primary.port)")
        for range in shard.slots {
            expect(range.lowerBound >= 0 && range.upperBound < RedisHashSlot.count, "range \(range) out of bounds")
            expect(topology.shardIndex(forSlot: range.lowerBound) == index, "slot \(range.lowerBound) not mapped to shard \(index)")
            expect(topology.shardIndex(forSlot: range.upperBound) == index, "slot \(range.upperBound) not mapped to shard \(index)")
            owned += range.count
        }
        for (a, b) in zip(shard.slots, shard.slots.dropFirst()) {
            expect(a.upperBound + 1 < b.lowerBound, "ranges \(a) and \(b) of one shard are not sorted, disjoint and joined")
        }
    }
    let mapped = (0..<RedisHashSlot.count).count { topology.shardIndex(forSlot: $0) != nil }
    expect(mapped == owned, "\(mapped) slots mapped, \(owned) in the ranges")
    expect(topology.coversEverySlot == (owned == RedisHashSlot.count), "coversEverySlot wrong with \(owned) slots")
    expect(topology.shardIndex(forSlot: -1) == nil && topology.shardIndex(forSlot: RedisHashSlot.count) == nil, "slot out of range mapped")

    // Written back as CLUSTER SLOTS (one entry per range, every replica in each), it is the same.
    func node(_ address: HostPort, _ id: String?) -> RESPValue {
        var fields: [RESPValue] = [bulk(address.host), .integer(Int64(address.port))]
        if let id { fields.append(bulk(id)) }
        return .array(fields)
    }
    let written = RESPValue.array(topology.shards.flatMap { shard in
        shard.slots.map { range in
            RESPValue.array([.integer(Int64(range.lowerBound)), .integer(Int64(range.upperBound)), node(shard.primary, shard.id)]
                            + shard.replicas.map { node($0, nil) })
        }
    })
    let again = RedisClusterTopology.parse(clusterSlots: written, askedHost: "0.0.0.0")
    expect(again == .success(topology), "\(topology) written back parses to \(again)")
}

func bulk(_ text: String) -> RESPValue {
    var buffer = ByteBufferAllocator().buffer(capacity: text.utf8.count)
    buffer.writeString(text)
    return .bulkString(buffer)
}

func checkErrorText(_ text: String, connectionHost: String) {
    let kind = RedisClusterErrorKind.classify(text)
    guard let redirect = RedisRedirect.parse(text, connectionHost: connectionHost) else { return }
    expect((0..<RedisHashSlot.count).contains(redirect.slot), "redirect slot \(redirect.slot)")
    expect((1...65_535).contains(redirect.address.port), "redirect port \(redirect.address.port)")
    expect(kind == (redirect.kind == .moved ? .moved : .ask), "\(text.debugDescription) parsed as \(redirect.kind), classified \(kind)")
    let written = "\(redirect.kind == .moved ? "MOVED" : "ASK") \(redirect.slot) \(redirect.address)"
    expect(RedisRedirect.parse(written, connectionHost: "0.0.0.0") == redirect, "\(written.debugDescription) does not parse back")
}

/// Every text in a value, arrays walked (the decoder bounds their depth).
func texts(_ value: RESPValue, into found: inout [String]) {
    switch value {
    case .error(let text), .simpleString(let text): found.append(text)
    case .bulkString(let bytes?): found.append(String(buffer: bytes))
    case .array(let elements?): for element in elements { texts(element, into: &found) }
    default: break
    }
}

fuzz { input in
    var reader = FuzzReader(input)
    let askedHost = askedHosts[Int(reader.byte()) % askedHosts.count]
    let stream = reader.rest()
    checkErrorText(String(decoding: stream, as: UTF8.self), connectionHost: askedHost)
    _ = RedisHashSlot.of(bytes: stream)

    var buffer = ByteBufferAllocator().buffer(capacity: stream.count)
    buffer.writeBytes(stream)
    let decoder = RESPDecoder()
    while true {
        let value: RESPValue
        do {
            guard let next = try decoder.next(from: &buffer) else { break }
            value = next
        } catch {
            break
        }
        checkTopology(value, askedHost: askedHost)
        if case .array(let entries?) = value {
            // Each top-level element on its own too: a reply nested one level down.
            for entry in entries { checkTopology(entry, askedHost: askedHost) }
        }
        var found: [String] = []
        texts(value, into: &found)
        for text in found.prefix(64) {
            checkErrorText(text, connectionHost: askedHost)
            let slot = RedisHashSlot.of(text)
            expect(slot == RedisHashSlot.of(bytes: Array(text.utf8)), "the slot of \(text.debugDescription) differs as bytes")
        }
    }
}
