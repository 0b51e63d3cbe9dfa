import Testing
@testable import ClusterConfig

/// `[redis] url = redis+cluster://...`, `[redis] mode` and `[cluster] log_level` as cluster.conf
/// reads them: what each accepted form sets, and the line and message of each refused one.
@Suite struct RedisClusterConfigTests {
    static let clusterURL = "redis+cluster://:pw@127.0.0.1:7000,127.0.0.1:7001,127.0.0.1:7002"

    func parse(_ text: String) throws -> ClusterConfig {
        try ClusterConfig.parse(text, file: "cluster.conf")
    }

    // MARK: url

    @Test func oneLineSwitchesANodeToAClusterWithShardedPubSub() throws {
        let config = try parse("[cluster]\nfanout = redis\n[redis]\nurl = \(Self.clusterURL)\n" + oneNode)
        let url = try #require(config.redisURL)
        #expect(url.cluster)
        #expect(url.seeds == [HostPort(host: "127.0.0.1", port: 7000), HostPort(host: "127.0.0.1", port: 7001), HostPort(host: "127.0.0.1", port: 7002)])
        #expect(url.password == "pw")
        #expect(config.redisMode == .sharded)
        #expect(config.redisTLS == nil)
    }

    @Test func aSingleRedisDefaultsToClassicPubSub() throws {
        #expect(try parse("[cluster]\nfanout = redis\n[redis]\nurl = redis://:pw@cache\n" + oneNode).redisMode == .classic)
        #expect(try parse(oneNode).redisMode == .classic)
    }

    @Test func aBadSeedIsReportedAtTheURLLine() {
        let text = "[cluster]\nfanout = redis\n\n[redis]\nurl = redis+cluster://:pw@10.0.0.1:7000,,10.0.0.2:7000\n" + oneNode
        #expect(configError(text)?.description == "cluster.conf:5: bad redis url: seed 2 of '10.0.0.1:7000,,10.0.0.2:7000' is empty; seeds are host:port separated by single commas")
    }

    @Test(arguments: [
        ("redis+cluster://h1:7000,h1:7000", "bad redis url: duplicate seed 'h1:7000': the same address as seed 1, h1:7000; list each node once"),
        ("redis+cluster://h1:7000,h2:99999", "bad redis url: seed 'h2:99999': port 99999 is out of range 1-65535"),
        ("redis+cluster://h1:7000/1", "bad redis url: a Redis Cluster has only database 0, got '/1'; remove it from the url"),
        ("redis+cluster://h1:7000,rediss://h2:7000", "bad redis url: a url has one scheme, written once before the first seed; found 'rediss://' after a ','; expected redis+cluster://[user:]password@host:port[,host:port...]"),
        ("redis://h1:6379,h2:6379", "bad redis url: several hosts in 'h1:6379,h2:6379' need a cluster url: expected redis+cluster://[user:]password@host:port[,host:port...]"),
    ])
    func badClusterURLsAreReportedAtTheirLine(url: String, message: String) {
        let error = configError("[redis]\nbuffer_ms = 100\nurl = \(url)\n" + oneNode)
        #expect(error?.line == 3)
        #expect(error?.message == message)
    }

    @Test func tooManySeedsAreReportedAtTheURLLine() {
        let seeds = (1...65).map { "10.0.1.\($0):7000" }.joined(separator: ",")
        let error = configError("[redis]\nurl = redis+cluster://pw@\(seeds)\n" + oneNode)
        #expect(error?.description == "cluster.conf:2: bad redis url: too many seeds: 65, at most 64; a few nodes per shard are enough, the cluster names the rest")
    }

    @Test func anEmptyURLNamesBothForms() {
        #expect(configError("[redis]\nurl =\n" + oneNode)?.description == "cluster.conf:2: empty value for 'url' in [redis]; expected redis://[user:]password@host[:port][/db] or redis+cluster://[user:]password@host:port[,host:port...]")
    }

    @Test func tlsClusterURLTakesTheRedisTLSFiles() throws {
        let text = "[redis]\nurl = rediss+cluster://:pw@redis-1:6380,redis-2:6380\ntls_ca = /r/ca.pem\ntls_cert = /r/c.pem\ntls_key = /r/k.pem\n" + oneNode
        let config = try parse(text)
        #expect(config.redisURL?.tls == true && config.redisURL?.cluster == true)
        #expect(config.redisTLS == RedisTLSSettings(caFile: "/r/ca.pem", certFile: "/r/c.pem", keyFile: "/r/k.pem", line: 2, caLine: 3, certLine: 4, keyLine: 5))
        #expect(config.redisMode == .sharded)
    }

    @Test func tlsFilesWithAPlainClusterURLAreRefused() {
        let error = configError("[redis]\nurl = redis+cluster://h1:7000\ntls_ca = /r/ca.pem\n" + oneNode)
        #expect(error?.description == "cluster.conf:3: 'tls_ca' in [redis] is only for TLS, but the url at line 2 is redis+cluster://; use a rediss+cluster:// url or remove it")
    }

    // MARK: mode

    @Test func classicModeOnAClusterKeepsClassicPubSub() throws {
        let config = try parse("[redis]\nmode = classic\nurl = \(Self.clusterURL)\n" + oneNode)
        #expect(config.redisMode == .classic)
        #expect(config.redisURL?.cluster == true)
    }

    @Test func shardedModeMayBeSpelledOut() throws {
        #expect(try parse("[redis]\nurl = \(Self.clusterURL)\nmode = sharded\n" + oneNode).redisMode == .sharded)
    }

    @Test func classicModeWithASingleRedisIsAccepted() throws {
        #expect(try parse("[redis]\nurl = redis://cache\nmode = classic\n" + oneNode).redisMode == .classic)
    }

    @Test func shardedModeNeedsAClusterURLAndIsReportedAtTheModeLine() {
        let single = configError("[cluster]\nfanout = redis\n[redis]\nurl = redis://:pw@cache\nmode = sharded\n" + oneNode)
        #expect(single?.description == "cluster.conf:5: mode = sharded needs a Redis Cluster url (redis+cluster://...), but the url at line 4 is redis://; remove mode or use mode = classic")
        let tls = configError("[redis]\nmode = sharded\nurl = rediss://cache\n" + oneNode)
        #expect(tls?.description == "cluster.conf:2: mode = sharded needs a Redis Cluster url (redis+cluster://...), but the url at line 3 is rediss://; remove mode or use mode = classic")
        let none = configError("[redis]\nmode = sharded\n" + oneNode)
        #expect(none?.description == "cluster.conf:2: mode = sharded needs a Redis Cluster url (redis+cluster://...), but [redis] has no url; remove mode or use mode = classic")
    }

    @Test(arguments: [
        ("shard", "bad mode 'shard' in [redis]; expected classic or sharded"),
        ("Sharded", "bad mode 'Sharded' in [redis]; expected classic or sharded"),
        ("classic sharded", "bad mode 'classic sharded' in [redis]; expected classic or sharded"),
    ])
    func badModesAreReportedAtTheirLine(mode: String, message: String) {
        let error = configError("[redis]\nurl = \(Self.clusterURL)\nmode = \(mode)\n" + oneNode)
        #expect(error?.line == 3)
        #expect(error?.message == message)
    }

    @Test func emptyAndRepeatedModesAreReportedAtTheirLine() {
        #expect(configError("[redis]\nmode =\n" + oneNode)?.description == "cluster.conf:2: empty value for 'mode' in [redis]; expected classic or sharded")
        #expect(configError("[redis]\nmode = classic\nmode = sharded\n" + oneNode)?.description == "cluster.conf:3: duplicate key 'mode' in [redis] (first set at line 2)")
    }

    @Test func modeBelongsInRedis() {
        let error = configError("[cluster]\nmode = sharded\n" + oneNode)
        #expect(error?.line == 2)
        #expect(error?.message.hasSuffix("('mode' belongs in [redis])") == true)
    }

    // MARK: log_level

    @Test(arguments: ClusterConfig.logLevels)
    func everyLogLevelIsAccepted(level: String) throws {
        #expect(try parse("[cluster]\nlog_level = \(level)\n" + oneNode).logLevel == level)
    }

    @Test func logLevelIsStoredLowercase() throws {
        #expect(try parse("[cluster]\nlog_level = Warning\n" + oneNode).logLevel == "warning")
    }

    @Test func absentLogLevelLeavesItToTheFlag() throws {
        #expect(try parse(oneNode).logLevel == nil)
    }

    @Test(arguments: ["verbose", "warn", "info debug", "5"])
    func badLogLevelsListTheAllowedOnes(level: String) {
        let error = configError("[cluster]\ndrain_timeout = 100\nlog_level = \(level)\n" + oneNode)
        #expect(error?.description == "cluster.conf:3: bad log_level '\(level)' in [cluster]; expected one of trace, debug, info, notice, warning, error, critical")
    }

    @Test func emptyLogLevelListsTheAllowedOnes() {
        #expect(configError("[cluster]\nlog_level =\n" + oneNode)?.description == "cluster.conf:2: empty value for 'log_level' in [cluster]; expected one of trace, debug, info, notice, warning, error, critical")
    }

    @Test func logLevelBelongsInCluster() {
        let error = configError("[redis]\nlog_level = debug\n" + oneNode)
        #expect(error?.line == 2)
        #expect(error?.message.hasSuffix("('log_level' belongs in [cluster])") == true)
    }

    // MARK: check-config summary

    @Test func summaryListsTheSeedsAndModeOfAClusterURL() throws {
        let config = try parse("[cluster]\nfanout = redis\n[redis]\nurl = \(Self.clusterURL)\n" + oneNode)
        let lines = config.summary().split(separator: "\n").map(String.init)
        #expect(lines.contains("redis: redis+cluster://***@127.0.0.1:7000,127.0.0.1:7001,127.0.0.1:7002"))
        #expect(lines.contains("redis cluster seeds (3): 127.0.0.1:7000, 127.0.0.1:7001, 127.0.0.1:7002"))
        #expect(lines.contains("redis mode: sharded (SSUBSCRIBE/SPUBLISH: a room's messages stay in its shard)"))
        #expect(!config.summary().contains(":pw@"))
        let classic = try parse("[cluster]\nfanout = redis\n[redis]\nurl = \(Self.clusterURL)\nmode = classic\n" + oneNode)
        #expect(classic.summary().contains("redis mode: classic (SUBSCRIBE/PUBLISH: the cluster copies every message to every node)"))
    }

    @Test func summaryOfASingleRedisHasNoSeedOrModeLines() throws {
        let summary = try parse("[cluster]\nfanout = redis\n[redis]\nurl = redis://cache\n" + oneNode).summary()
        #expect(!summary.contains("seeds"))
        #expect(!summary.contains("redis mode"))
    }

    @Test func summaryShowsTheLogLevelOnlyWhenSet() throws {
        #expect(try parse("[cluster]\nlog_level = notice\n" + oneNode).summary().split(separator: "\n").contains("log_level: notice"))
        #expect(!(try parse(oneNode).summary().contains("log_level")))
    }
}
