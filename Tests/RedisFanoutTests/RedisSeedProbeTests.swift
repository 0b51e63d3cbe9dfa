import ClusterConfig
import NIOCore
import NIOPosix
import Testing
@testable import RedisFanout

/// `check-config --connect`'s judgement of each seed, against fake Redis nodes on loopback
/// (the cluster fanout tests' `FakeNode`) answering with the replies a real server sends: a
/// plain server behind a cluster url, a cluster node behind a single-server url, a cluster that
/// is down, AUTH refused or missing, a seed that is down or silent. (A real redis-server is
/// asked by IntegrationTests/integration/test_check_config_redis_probe.py.)
@Suite(.serialized) struct RedisSeedProbeTests {
    typealias FakeNode = RedisClusterFanoutRedirectTests.FakeNode

    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)

    static let clusterInfoOK = bulk("cluster_state:ok\r\ncluster_slots_assigned:16384\r\ncluster_known_nodes:6\r\n")
    static let clusterInfoFail = bulk("cluster_state:fail\r\ncluster_slots_assigned:16384\r\ncluster_known_nodes:6\r\n")

    /// The `CLUSTER SLOTS` reply of a real 3-primary cluster.
    static func threePrimaries() throws -> RESPValue {
        var stream = buffer(RedisClusterFixtures.bytes(RedisClusterFixtures.threePrimaries))
        return try #require(try RESPDecoder().next(from: &stream))
    }

    /// A fake node that answers `CLUSTER SLOTS` with `slots`, `CLUSTER INFO` with `info`,
    /// and AUTH with `auth`.
    func node(slots: RESPValue, info: RESPValue = RedisSeedProbeTests.clusterInfoOK,
              auth: RESPValue = .simpleString("OK")) throws -> FakeNode {
        try FakeNode(group: group) { command in
            switch (command.first?.uppercased(), command.dropFirst().first?.uppercased()) {
            case ("AUTH", _): return [auth]
            case ("CLUSTER", "SLOTS"): return [slots]
            case ("CLUSTER", "INFO"): return [info]
            default: return [.error("ERR unknown command")]
            }
        }
    }

    func url(_ seeds: [HostPort], cluster: Bool, password: String? = nil) -> RedisURL {
        RedisURL(password: password, seeds: seeds, cluster: cluster)
    }

    func probe(_ url: RedisURL, timeout: TimeAmount = .seconds(3)) throws -> [RedisSeedProbe.Report] {
        try RedisSeedProbe.probe(url: url, tls: nil, timeout: timeout, eventLoop: group.next()).wait()
    }

    @Test func aPlainServerBehindAClusterURLIsUnusableAndTheFixIsNamed() throws {
        let plain = try node(slots: .error(RedisClusterFixtures.clusterDisabled))
        defer { plain.close() }
        let reports = try probe(url([plain.address], cluster: true))
        #expect(reports == [RedisSeedProbe.Report(
            seed: plain.address, verdict: .unusable,
            finding: "not in cluster mode (ERR This instance has cluster support disabled): use redis:// for a single server")])
        #expect(reports[0].description.hasPrefix("redis seed \(plain.address): unusable: not in cluster mode"))
    }

    @Test func aPlainServerBehindASingleServerURLIsOK() throws {
        let plain = try node(slots: .error(RedisClusterFixtures.clusterDisabled))
        defer { plain.close() }
        let reports = try probe(url([plain.address], cluster: false))
        #expect(reports.map(\.verdict) == [.ok])
        #expect(reports[0].finding == "a single server (not in cluster mode)")
    }

    @Test func aClusterNodeServingEverySlotIsOKWithItsShardCount() throws {
        let clusterNode = try node(slots: try Self.threePrimaries())
        defer { clusterNode.close() }
        let reports = try probe(url([clusterNode.address], cluster: true))
        #expect(reports.map(\.verdict) == [.ok])
        #expect(reports[0].finding == "in cluster mode, 3 shards covering every slot")
        #expect(clusterNode.sent("CLUSTER") == [["CLUSTER", "SLOTS"], ["CLUSTER", "INFO"]])
    }

    @Test func aClusterThatIsDownIsUnusableAndSaysCLUSTERDOWN() throws {
        let clusterNode = try node(slots: try Self.threePrimaries(), info: Self.clusterInfoFail)
        defer { clusterNode.close() }
        let reports = try probe(url([clusterNode.address], cluster: true))
        #expect(reports.map(\.verdict) == [.unusable])
        #expect(reports[0].finding.hasPrefix("CLUSTERDOWN: in cluster mode, 3 shards covering every slot, but cluster_state:fail"))
    }

    @Test func slotsWithoutAShardAreAWarningThatCountsThem() throws {
        let oneShard = RESPValue.array([.array([.integer(0), .integer(9999), .array([bulk("127.0.0.1"), .integer(7301)])])])
        let clusterNode = try node(slots: oneShard)
        defer { clusterNode.close() }
        let reports = try probe(url([clusterNode.address], cluster: true))
        #expect(reports.map(\.verdict) == [.warning])
        #expect(reports[0].finding.hasPrefix("in cluster mode, 1 shard covering 10000 of 16384 slots"))
    }

    @Test func aClusterNodeBehindASingleServerURLIsAWarningNamingTheClusterURL() throws {
        let clusterNode = try node(slots: try Self.threePrimaries())
        defer { clusterNode.close() }
        let reports = try probe(url([clusterNode.address], cluster: false))
        #expect(reports.map(\.verdict) == [.warning])
        #expect(reports[0].finding.hasPrefix("a Redis Cluster node of 3 shards behind a single-server url: use redis+cluster:// "
            + "(with mode = classic or sharded)"))
    }

    @Test func aRefusedAuthIsToldApartFromALostConnection() throws {
        let refusing = try node(slots: try Self.threePrimaries(),
                                auth: .error("WRONGPASS invalid username-password pair or user is disabled."))
        defer { refusing.close() }
        let reports = try probe(url([refusing.address], cluster: true, password: "not-it"))
        #expect(refusing.sent("AUTH") == [["AUTH", "not-it"]])
        #expect(reports.map(\.verdict) == [.unusable])
        #expect(reports[0].finding == "AUTH refused (WRONGPASS invalid username-password pair or user is disabled.): "
            + "check the user and password in [redis] url")
    }

    @Test func aMissingPasswordIsNamed() throws {
        let guarded = try node(slots: .error("NOAUTH Authentication required."))
        defer { guarded.close() }
        let reports = try probe(url([guarded.address], cluster: false))
        #expect(reports.map(\.verdict) == [.unusable])
        #expect(reports[0].finding.hasPrefix("AUTH required (NOAUTH Authentication required.)"))
    }

    @Test func everySeedIsReportedInOrderADeadOneAsUnreachable() throws {
        let plain = try node(slots: .error(RedisClusterFixtures.clusterDisabled))
        defer { plain.close() }
        let clusterNode = try node(slots: try Self.threePrimaries())
        defer { clusterNode.close() }
        let dead = try node(slots: .array([]))
        let deadAddress = dead.address
        dead.close()
        let reports = try probe(url([clusterNode.address, deadAddress, plain.address], cluster: true))
        #expect(reports.map(\.seed) == [clusterNode.address, deadAddress, plain.address])
        #expect(reports.map(\.verdict) == [.ok, .unusable, .unusable])
        #expect(reports[1].finding.hasPrefix("unreachable: "))
        #expect(reports[1].finding.lowercased().contains("refused"))
    }

    @Test func aSeedThatNeverAnswersIsUnusableWithinTheTimeout() throws {
        let silent = try FakeNode(group: group) { _ in [] }
        defer { silent.close() }
        let started = ContinuousClock.now
        let reports = try probe(url([silent.address], cluster: true), timeout: .milliseconds(300))
        #expect(ContinuousClock.now - started < .seconds(2))
        #expect(reports.map(\.verdict) == [.unusable])
        #expect(reports[0].finding.hasPrefix("no reply within 300 ms"))
    }

    @Test func clusterStateIsReadFromClusterInfo() {
        #expect(RedisSeedProbe.clusterState(Self.clusterInfoOK) == "ok")
        #expect(RedisSeedProbe.clusterState(Self.clusterInfoFail) == "fail")
        #expect(RedisSeedProbe.clusterState(bulk("cluster_enabled:1\r\n")) == nil)
        #expect(RedisSeedProbe.clusterState(.error("ERR This instance has cluster support disabled")) == nil)
    }
}
