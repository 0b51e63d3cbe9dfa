import ClusterConfig
import Testing
@testable import RedisFanout

/// `-MOVED` / `-ASK` replies as a real Redis Cluster sends them, and the error kinds a cluster
/// client must tell apart.
@Suite struct RedisRedirectTests {
    func address(_ host: String, _ port: Int) -> HostPort { HostPort(host: host, port: port) }

    // MARK: Real replies

    @Test func movedNamesTheSlotAndItsPrimary() {
        let redirect = RedisRedirect.parse(RedisClusterFixtures.movedFromWrongPrimary, connectionHost: "127.0.0.1")
        #expect(redirect == RedisRedirect(kind: .moved, slot: 12182, address: address("127.0.0.1", 7303)))
        #expect(redirect?.slot == RedisHashSlot.of("foo"), "the slot Redis named is the one we compute for the channel")
    }

    @Test func askNamesTheNodeTheSlotIsMigratingTo() {
        let redirect = RedisRedirect.parse(RedisClusterFixtures.askWhileMigrating, connectionHost: "127.0.0.1")
        #expect(redirect == RedisRedirect(kind: .ask, slot: 12182, address: address("127.0.0.1", 7301)))
    }

    @Test func unknownEndpointMeansTheHostOfTheConnection() {
        // cluster-preferred-endpoint-type unknown-endpoint: "MOVED 12182 :7303".
        #expect(RedisRedirect.parse(RedisClusterFixtures.movedUnknownEndpoint, connectionHost: "10.1.2.3")?.address
                == address("10.1.2.3", 7303))
        #expect(RedisRedirect.parse(RedisClusterFixtures.movedUnknownEndpoint, connectionHost: "::1")?.address
                == address("::1", 7303))
        #expect(RedisRedirect.parse(RedisClusterFixtures.movedUnknownEndpoint, connectionHost: "::1")?.address.description
                == "[::1]:7303")
    }

    @Test func missingHostnameMeansTheHostOfTheConnection() {
        // cluster-preferred-endpoint-type hostname with none announced: "MOVED 12182 ?:7303".
        #expect(RedisRedirect.parse(RedisClusterFixtures.movedHostnameMissing, connectionHost: "redis-a.internal")?.address
                == address("redis-a.internal", 7303))
    }

    @Test func announcedHostnamesAreKept() {
        #expect(RedisRedirect.parse(RedisClusterFixtures.movedHostname, connectionHost: "127.0.0.1")?.address
                == address("node-7303.localhost", 7303))
        #expect(RedisRedirect.parse("MOVED 1 Redis-B.Example.ORG:7000", connectionHost: "x")?.address
                == address("redis-b.example.org", 7000), "host names are compared lowercased, as in the config")
    }

    // MARK: IPv6

    @Test func ipv6EndpointsAsRedisWritesThemUnbracketed() {
        #expect(RedisRedirect.parse("MOVED 3999 ::1:6381", connectionHost: "x")
                == RedisRedirect(kind: .moved, slot: 3999, address: address("::1", 6381)))
        #expect(RedisRedirect.parse("ASK 3999 2001:db8::7:6379", connectionHost: "x")
                == RedisRedirect(kind: .ask, slot: 3999, address: address("2001:db8::7", 6379)))
        #expect(RedisRedirect.parse("MOVED 0 FE80::1:6379", connectionHost: "x")?.address == address("fe80::1", 6379))
    }

    @Test func ipv6EndpointsInBrackets() {
        #expect(RedisRedirect.parse("MOVED 3999 [::1]:6381", connectionHost: "x")?.address == address("::1", 6381))
        #expect(RedisRedirect.parse("MOVED 3999 []:6381", connectionHost: "10.0.0.1") == nil, "brackets around nothing")
        #expect(RedisRedirect.parse("MOVED 3999 [?]:6381", connectionHost: "10.0.0.1") == nil)
        #expect(RedisRedirect.parse("MOVED 3999 [127.0.0.1]:6381", connectionHost: "x") == nil, "brackets are for IPv6")
    }

    // MARK: Slots at the edges

    @Test func slotsZeroAndLast() {
        #expect(RedisRedirect.parse("MOVED 0 127.0.0.1:7000", connectionHost: "x")?.slot == 0)
        #expect(RedisRedirect.parse("MOVED 16383 127.0.0.1:7000", connectionHost: "x")?.slot == 16383)
    }

    // MARK: Not a redirect

    @Test(arguments: [
        "", "MOVED", "MOVED 12182", "ASK 12182 ", "MOVED 12182 127.0.0.1:7303 extra",
        "MOVED  12182 127.0.0.1:7303", "moved 12182 127.0.0.1:7303", "-MOVED 12182 127.0.0.1:7303",
        "MOVED 16384 127.0.0.1:7303", "MOVED -1 127.0.0.1:7303", "MOVED +1 127.0.0.1:7303", "MOVED 0x10 127.0.0.1:7303",
        "MOVED 123456789012345678901234567890 127.0.0.1:7303", "MOVED abc 127.0.0.1:7303",
        "MOVED 1 127.0.0.1", "MOVED 1 127.0.0.1:", "MOVED 1 127.0.0.1:0", "MOVED 1 127.0.0.1:65536",
        "MOVED 1 127.0.0.1:99999999999999999999", "MOVED 1 127.0.0.1:-5", "MOVED 1 127.0.0.1:80a",
        "MOVED 1 bad_host:7000", "MOVED 1 256.0.0.1:7000", "MOVED 1 [::1:7000", "MOVED 1 ::g:7000",
        "MOVED\t1 127.0.0.1:7000", "MOVED 1 127.0.0.1:7000\r\n",
        "CLUSTERDOWN The cluster is down", "ERR This instance has cluster support disabled",
        "TRYAGAIN Multiple keys request during rehashing of slot",
    ])
    func otherTextIsNotARedirect(text: String) {
        #expect(RedisRedirect.parse(text, connectionHost: "127.0.0.1") == nil, "\(text.debugDescription)")
    }

    @Test func anUnusableConnectionHostMakesNoRedirect() {
        #expect(RedisRedirect.parse("MOVED 1 :7000", connectionHost: "") == nil)
        #expect(RedisRedirect.parse("MOVED 1 :7000", connectionHost: "not a host") == nil)
    }

    // MARK: Error kinds

    @Test func realErrorRepliesAreClassified() {
        #expect(RedisClusterErrorKind.classify(RedisClusterFixtures.movedFromWrongPrimary) == .moved)
        #expect(RedisClusterErrorKind.classify(RedisClusterFixtures.askWhileMigrating) == .ask)
        #expect(RedisClusterErrorKind.classify(RedisClusterFixtures.clusterDown) == .clusterDown)
        #expect(RedisClusterErrorKind.classify(RedisClusterFixtures.clusterDisabled) == .clusterSupportDisabled)
    }

    @Test func theOtherClusterErrorsOfTheSpec() {
        #expect(RedisClusterErrorKind.classify("CLUSTERDOWN Hash slot not served") == .clusterDown)
        #expect(RedisClusterErrorKind.classify("CLUSTERDOWN The cluster is down and only accepts read commands") == .clusterDown)
        #expect(RedisClusterErrorKind.classify("TRYAGAIN Multiple keys request during rehashing of slot") == .tryAgain)
        #expect(RedisClusterErrorKind.classify("CLUSTERDOWN") == .clusterDown, "the code alone")
    }

    @Test func otherErrorsAreOther() {
        for text in ["", "ERR unknown command 'SSUBSCRIBE'", "NOAUTH Authentication required.",
                     "WRONGPASS invalid username-password pair or user is disabled.", "ERR cluster",
                     "CROSSSLOT Keys in request don't hash to the same slot", "clusterdown lower case",
                     "MOVEDX 1 a:1", "LOADING Redis is loading the dataset in memory"] {
            #expect(RedisClusterErrorKind.classify(text) == .other, "\(text.debugDescription)")
        }
    }

    @Test func onlyDownAndTryAgainPassByThemselves() {
        #expect(RedisClusterErrorKind.clusterDown.isTransient)
        #expect(RedisClusterErrorKind.tryAgain.isTransient)
        for kind in [RedisClusterErrorKind.moved, .ask, .clusterSupportDisabled, .other] {
            #expect(!kind.isTransient, "\(kind)")
        }
    }
}
