import ClusterConfig
import NIOCore
import Testing
@testable import RedisFanout

/// `CLUSTER SLOTS` replies of a real cluster through the RESP decoder, and malformed ones.
@Suite struct RedisClusterTopologyTests {
    // MARK: Helpers

    /// The fixture's bytes through the production decoder (default limits), as one value.
    func decoded(_ lines: [String]) throws -> RESPValue {
        var stream = buffer(RedisClusterFixtures.bytes(lines))
        let value = try #require(try RESPDecoder().next(from: &stream))
        #expect(stream.readableBytes == 0)
        return value
    }

    func topology(_ lines: [String], askedHost: String = "127.0.0.1") throws -> RedisClusterTopology {
        try RedisClusterTopology.parse(clusterSlots: decoded(lines), askedHost: askedHost).get()
    }

    func local(_ port: Int) -> HostPort { HostPort(host: "127.0.0.1", port: port) }

    /// A node as Redis 7 sends it (`[endpoint, port, id, metadata]`), or as Redis 3.0 did
    /// (`[endpoint, port]`) when there is no id.
    func node(_ host: String, _ port: Int64, _ id: String? = nil) -> RESPValue {
        .array([bulk(host), .integer(port)] + (id.map { [bulk($0), .array([])] } ?? []))
    }

    func range(_ start: Int64, _ end: Int64, _ nodes: RESPValue...) -> RESPValue {
        .array([.integer(start), .integer(end)] + nodes)
    }

    /// The failure message for `reply`, or nil if it parsed.
    func failure(_ reply: RESPValue, askedHost: String = "127.0.0.1") -> String? {
        switch RedisClusterTopology.parse(clusterSlots: reply, askedHost: askedHost) {
        case .success: return nil
        case .failure(let error): return error.description
        }
    }

    // MARK: A real cluster

    @Test func freshClusterHasThreeShardsCoveringEverySlot() throws {
        let topology = try topology(RedisClusterFixtures.threePrimaries)
        #expect(topology.shards == [
            RedisShard(primary: local(7301), replicas: [local(7304)], slots: [0...5460],
                       id: "df98c7bdc60b93b2713cff4c420b8876b9568ecd"),
            RedisShard(primary: local(7302), replicas: [local(7305)], slots: [5461...10922],
                       id: "6354562974a600a2a8d7b2719319f5d709fd7f69"),
            RedisShard(primary: local(7303), replicas: [local(7306)], slots: [10923...16383],
                       id: "968fb87d427a66ecce65be4205b778b30a4059ff"),
        ])
        #expect(topology.coversEverySlot)
    }

    @Test func slotsMapToTheirShard() throws {
        let topology = try topology(RedisClusterFixtures.threePrimaries)
        #expect(topology.shardIndex(forSlot: 0) == 0)
        #expect(topology.shardIndex(forSlot: 5460) == 0)
        #expect(topology.shardIndex(forSlot: 5461) == 1)
        #expect(topology.shardIndex(forSlot: 10922) == 1)
        #expect(topology.shardIndex(forSlot: 10923) == 2)
        #expect(topology.shardIndex(forSlot: 16383) == 2)
        // The same cluster answered "MOVED 12182 127.0.0.1:7303" to SPUBLISH foo on 7302.
        #expect(topology.shard(forSlot: RedisHashSlot.of("foo"))?.primary == local(7303))
        #expect(topology.shard(forSlot: RedisHashSlot.of("bar"))?.primary == local(7301))
    }

    @Test func slotsOutsideTheRangeHaveNoShard() throws {
        let topology = try topology(RedisClusterFixtures.threePrimaries)
        #expect(topology.shardIndex(forSlot: -1) == nil)
        #expect(topology.shardIndex(forSlot: 16384) == nil)
        #expect(topology.shardIndex(forSlot: Int.max) == nil)
        #expect(topology.shardIndex(forSlot: Int.min) == nil)
    }

    @Test func everyNodeOncePrimariesFirst() throws {
        #expect(try topology(RedisClusterFixtures.threePrimaries).nodes == [7301, 7302, 7303, 7304, 7305, 7306].map(local))
    }

    @Test func aReplySplitAnywhereDecodesToTheSameTopology() throws {
        let bytes = RedisClusterFixtures.bytes(RedisClusterFixtures.resharded)
        let whole = try topology(RedisClusterFixtures.resharded)
        for cut in stride(from: 1, to: bytes.count, by: 7) {
            var stream = buffer(Array(bytes[..<cut]))
            let partial = try RESPDecoder().next(from: &stream)
            #expect(partial == nil, "a partial reply (\(cut) bytes) is not a value yet")
            stream.writeBytes(bytes[cut...])
            let value = try #require(try RESPDecoder().next(from: &stream))
            #expect(try RedisClusterTopology.parse(clusterSlots: value, askedHost: "127.0.0.1").get() == whole)
        }
    }

    @Test func aPrimaryWithSeveralRangesIsOneShard() throws {
        // After resharding 0-99 to 7302 and 10923 to 7301: five ranges, three shards.
        let topology = try topology(RedisClusterFixtures.resharded)
        #expect(topology.shards.map(\.primary) == [local(7302), local(7301), local(7303)], "ordered by first slot")
        #expect(topology.shards.map(\.slots) == [[0...99, 5461...10922], [100...5460, 10923...10923], [10924...16383]])
        #expect(topology.shards.map(\.replicas) == [[local(7305)], [local(7304)], [local(7306)]])
        #expect(topology.coversEverySlot)
        #expect(topology.shardIndex(forSlot: 99) == 0)
        #expect(topology.shardIndex(forSlot: 100) == 1)
        #expect(topology.shardIndex(forSlot: 7000) == 0)
        #expect(topology.shardIndex(forSlot: 10923) == 1)
        #expect(topology.shardIndex(forSlot: 10924) == 2)
    }

    @Test func afterAFailoverThePromotedReplicaIsThePrimary() throws {
        let before = try topology(RedisClusterFixtures.resharded)
        let after = try topology(RedisClusterFixtures.failedOver)
        #expect(after.shards[2] == RedisShard(primary: local(7306), replicas: [], slots: [10924...16383],
                                              id: "7fa471024cb076738ba03eb8e35c2e20b644d57b"))
        #expect(after.shards[0] == before.shards[0])
        #expect(after.shards[1] == before.shards[1])
        #expect(after != before)
        #expect(after.nodes == [7302, 7301, 7306, 7305, 7304].map(local), "the dead 7303 is gone")
    }

    @Test func equalRepliesGiveEqualTopologies() throws {
        #expect(try topology(RedisClusterFixtures.threePrimaries) == topology(RedisClusterFixtures.threePrimaries))
        #expect(try topology(RedisClusterFixtures.threePrimaries) != topology(RedisClusterFixtures.resharded))
    }

    // MARK: Endpoints Redis may leave out

    @Test func unknownEndpointIsTheAddressAsked() throws {
        // cluster-preferred-endpoint-type unknown-endpoint: every endpoint a null bulk string.
        let topology = try topology(RedisClusterFixtures.unknownEndpoint, askedHost: "redis.example")
        #expect(topology.shards.map(\.primary.description) == ["redis.example:7301", "redis.example:7302", "redis.example:7303"])
        #expect(topology.shards.map(\.replicas) == [7304, 7305, 7306].map { [HostPort(host: "redis.example", port: $0)] })
        let v6 = try self.topology(RedisClusterFixtures.unknownEndpoint, askedHost: "::1")
        #expect(v6.shards[0].primary.description == "[::1]:7301")
    }

    @Test func missingHostnameFallsBackToTheIpOfTheMetadata() throws {
        // cluster-preferred-endpoint-type hostname, none announced: endpoint "?", metadata ip.
        let topology = try topology(RedisClusterFixtures.hostnameMissing, askedHost: "seed.example")
        #expect(topology == (try self.topology(RedisClusterFixtures.threePrimaries)))
    }

    @Test func missingHostnameWithoutMetadataIsTheAddressAsked() throws {
        let reply = RESPValue.array([range(0, 16383, .array([bulk("?"), .integer(7000)]))])
        let topology = try RedisClusterTopology.parse(clusterSlots: reply, askedHost: "10.0.0.9").get()
        #expect(topology.shards[0].primary == HostPort(host: "10.0.0.9", port: 7000))
        #expect(topology.shards[0].id == nil)
    }

    @Test func announcedHostnamesAreTheEndpoints() throws {
        let topology = try topology(RedisClusterFixtures.hostnames)
        #expect(topology.nodes.map(\.description) == (7301...7306).map { "node-\($0).localhost:\($0)" })
    }

    @Test func ipv6Endpoints() throws {
        let reply = RESPValue.array([range(0, 16383, node("::1", 7000, "a"), node("2001:DB8::1", 7001))])
        let topology = try RedisClusterTopology.parse(clusterSlots: reply, askedHost: "x").get()
        #expect(topology.shards[0].primary.description == "[::1]:7000")
        #expect(topology.shards[0].replicas.map(\.description) == ["[2001:db8::1]:7001"])
    }

    @Test func nodesWithoutIdOrMetadataAsOlderServersSend() throws {
        let reply = RESPValue.array([range(0, 16383, .array([bulk("127.0.0.1"), .integer(7000)]))])
        let topology = try RedisClusterTopology.parse(clusterSlots: reply, askedHost: "x").get()
        #expect(topology.shards == [RedisShard(primary: local(7000), replicas: [], slots: [0...16383], id: nil)])
    }

    // MARK: Coverage and merging

    @Test func slotsNobodyServesHaveNoShard() throws {
        let reply = RESPValue.array([range(0, 99, node("127.0.0.1", 7000)), range(200, 16383, node("127.0.0.1", 7001))])
        let topology = try RedisClusterTopology.parse(clusterSlots: reply, askedHost: "x").get()
        #expect(!topology.coversEverySlot)
        #expect(topology.shardIndex(forSlot: 99) == 0)
        #expect(topology.shardIndex(forSlot: 100) == nil)
        #expect(topology.shardIndex(forSlot: 199) == nil)
        #expect(topology.shardIndex(forSlot: 200) == 1)
    }

    @Test func adjacentRangesOfOnePrimaryAreJoined() throws {
        let reply = RESPValue.array([
            range(8192, 16383, node("127.0.0.1", 7000, "n1")), range(100, 8191, node("127.0.0.1", 7000, "n1")),
            range(0, 99, node("127.0.0.1", 7000, "n1")),
        ])
        let topology = try RedisClusterTopology.parse(clusterSlots: reply, askedHost: "x").get()
        #expect(topology.shards.map(\.slots) == [[0...16383]])
        #expect(topology.coversEverySlot)
    }

    @Test func replicasNamedInSeveralRangesAreListedOnce() throws {
        let reply = RESPValue.array([
            range(0, 10, node("127.0.0.1", 7000), node("127.0.0.1", 7003)),
            range(20, 30, node("127.0.0.1", 7000), node("127.0.0.1", 7004), node("127.0.0.1", 7003)),
        ])
        let topology = try RedisClusterTopology.parse(clusterSlots: reply, askedHost: "x").get()
        #expect(topology.shards.map(\.replicas) == [[local(7003), local(7004)]])
    }

    @Test func oneRangePerSlotIsStillOneShardPerPrimary() throws {
        // The most fragmented reply possible: 16384 one-slot ranges, dealt round-robin.
        let ports: [Int64] = [7000, 7001, 7002]
        let reply = RESPValue.array((0..<16384).map { slot in
            range(Int64(slot), Int64(slot), node("127.0.0.1", ports[slot % 3]))
        })
        let topology = try RedisClusterTopology.parse(clusterSlots: reply, askedHost: "x").get()
        #expect(topology.shards.count == 3)
        #expect(topology.shards.map { $0.slots.count } == [5462, 5461, 5461])
        #expect(topology.coversEverySlot)
        for slot in [0, 1, 2, 3, 16383] { #expect(topology.shardIndex(forSlot: slot) == slot % 3) }
    }

    @Test func shardsBuiltInCodeAreSortedAndChecked() throws {
        let topology = try RedisClusterTopology(shards: [
            RedisShard(primary: local(7001), slots: [8192...16383]),
            RedisShard(primary: local(7000), slots: [4096...8191, 0...4095]),
        ])
        #expect(topology.shards.map(\.primary) == [local(7000), local(7001)])
        #expect(topology.shards[0].slots == [0...8191])
        #expect(throws: RedisTopologyError("shard 127.0.0.1:7000 serves no slot")) {
            try RedisClusterTopology(shards: [RedisShard(primary: local(7000), slots: [])])
        }
        #expect(throws: RedisTopologyError("shard 127.0.0.1:7000: slot range 16000-16384 is outside 0-16383")) {
            try RedisClusterTopology(shards: [RedisShard(primary: local(7000), slots: [16000...16384])])
        }
    }

    // MARK: Malformed replies

    @Test func errorRepliesAreReportedWithTheirText() {
        #expect(failure(.error(RedisClusterFixtures.clusterDisabled))
                == "CLUSTER SLOTS failed: 'ERR This instance has cluster support disabled'")
    }

    @Test func aReplyThatIsNotAListOfRanges() {
        #expect(failure(.integer(3)) == "CLUSTER SLOTS reply is the integer 3, expected an array of slot ranges")
        #expect(failure(.array(nil)) == "CLUSTER SLOTS reply is a null array, expected an array of slot ranges")
        #expect(failure(.simpleString("OK")) == "CLUSTER SLOTS reply is a simple string, expected an array of slot ranges")
        #expect(failure(bulk("0 16383")) == "CLUSTER SLOTS reply is a bulk string, expected an array of slot ranges")
        #expect(failure(.array([])) == "CLUSTER SLOTS reply lists no slot ranges: the cluster has no slots assigned")
    }

    @Test func malformedEntries() {
        let good = node("127.0.0.1", 7000)
        #expect(failure(.array([.integer(0)])) == "CLUSTER SLOTS entry 0 is the integer 0, expected [start, end, primary, replicas...]")
        #expect(failure(.array([.array(nil)])) == "CLUSTER SLOTS entry 0 is a null array, expected [start, end, primary, replicas...]")
        #expect(failure(.array([.array([.integer(0), .integer(5)])]))
                == "CLUSTER SLOTS entry 0 has 2 elements, expected at least 3 (start, end, primary)")
        #expect(failure(.array([range(0, 5, good), .array([bulk("0"), .integer(5), good])]))
                == "CLUSTER SLOTS entry 1: start slot is a bulk string, expected an integer")
    }

    @Test func slotNumbersOutOfOrderOrRange() {
        let good = node("127.0.0.1", 7000)
        #expect(failure(.array([range(10, 5, good)])) == "CLUSTER SLOTS entry 0: slot range 10-5 starts after it ends")
        #expect(failure(.array([range(0, 16384, good)])) == "CLUSTER SLOTS entry 0: end slot 16384 is outside 0-16383")
        #expect(failure(.array([range(-1, 5, good)])) == "CLUSTER SLOTS entry 0: start slot -1 is outside 0-16383")
        #expect(failure(.array([range(Int64.min, Int64.max, good)]))
                == "CLUSTER SLOTS entry 0: start slot \(Int64.min) is outside 0-16383")
    }

    @Test func overlappingRanges() {
        #expect(failure(.array([range(0, 100, node("127.0.0.1", 7000)), range(50, 16383, node("127.0.0.1", 7001))]))
                == "slot 50 is claimed by both 127.0.0.1:7000 and 127.0.0.1:7001")
        #expect(failure(.array([range(0, 100, node("127.0.0.1", 7000)), range(100, 200, node("127.0.0.1", 7000))]))
                == "shard 127.0.0.1:7000 lists slot 100 twice")
        #expect(failure(.array([range(5, 5, node("127.0.0.1", 7000)), range(5, 5, node("127.0.0.1", 7000))]))
                == "shard 127.0.0.1:7000 lists slot 5 twice")
    }

    @Test func malformedNodes() {
        func entry(_ primary: RESPValue) -> RESPValue { .array([range(0, 16383, primary)]) }
        #expect(failure(entry(bulk("127.0.0.1:7000")))
                == "CLUSTER SLOTS entry 0: primary is a bulk string, expected [endpoint, port, id...]")
        #expect(failure(entry(.array([bulk("127.0.0.1")])))
                == "CLUSTER SLOTS entry 0: primary has 1 elements, expected at least endpoint and port")
        #expect(failure(entry(.array([.integer(127), .integer(7000)])))
                == "CLUSTER SLOTS entry 0: primary endpoint is the integer 127, expected a string")
        #expect(failure(entry(.array([bulk("127.0.0.1"), bulk("7000")])))
                == "CLUSTER SLOTS entry 0: primary port is a bulk string, expected an integer")
        #expect(failure(entry(.array([bulk("127.0.0.1"), .integer(7000), .integer(1)])))
                == "CLUSTER SLOTS entry 0: primary node id is the integer 1, expected a string")
        #expect(failure(.array([range(0, 16383, node("127.0.0.1", 7000), .array(nil))]))
                == "CLUSTER SLOTS entry 0: replica 1 is a null array, expected [endpoint, port, id...]")
    }

    @Test func portsOutsideTheRange() {
        for port: Int64 in [0, -1, 65536, Int64.max] {
            #expect(failure(.array([range(0, 16383, node("127.0.0.1", port))]))
                    == "CLUSTER SLOTS entry 0: primary port \(port) is outside 1-65535")
        }
        #expect(failure(.array([range(0, 16383, node("127.0.0.1", 65535))])) == nil)
    }

    @Test func endpointsThatAreNoAddress() {
        for host in ["bad host", "a_b", "256.1.1.1", "::g", "[::1]", "127.0.0.1:7000", "\u{0}", "héllo"] {
            let message = failure(.array([range(0, 16383, node(host, 7000))]))
            #expect(message?.hasPrefix("CLUSTER SLOTS entry 0: primary address: ") == true, "\(host.debugDescription): \(String(describing: message))")
        }
        #expect(failure(.array([range(0, 16383, node("", 7000))]), askedHost: "") != nil, "nothing to fill an empty endpoint with")
    }

    @Test func oneNodeWithTwoIds() {
        #expect(failure(.array([range(0, 10, node("127.0.0.1", 7000, "aaa")), range(11, 20, node("127.0.0.1", 7000, "bbb"))]))
                == "CLUSTER SLOTS entry 1: primary 127.0.0.1:7000 has node id 'bbb' here and 'aaa' in an earlier entry")
    }

    @Test func hostileTextIsClippedInMessages() {
        let long = String(repeating: "E", count: 5000)
        let message = failure(.error(long))
        #expect(message == "CLUSTER SLOTS failed: '\(String(repeating: "E", count: 80))...'")
    }
}
