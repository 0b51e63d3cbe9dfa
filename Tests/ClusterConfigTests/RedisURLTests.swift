import Testing
@testable import ClusterConfig

private func parsed(_ s: String) -> RedisURL? { try? RedisURL.parse(s).get() }
private func failure(_ s: String) -> String? {
    if case .failure(let error) = RedisURL.parse(s) { return error.message }
    return nil
}

@Test func hostOnlyGetsDefaultPortAndDatabase() {
    #expect(parsed("redis://localhost") == RedisURL(user: nil, password: nil, host: "localhost", port: 6379, db: 0))
    #expect(parsed("redis://10.0.0.5:6380") == RedisURL(host: "10.0.0.5", port: 6380))
    #expect(parsed("redis://cache/3") == RedisURL(host: "cache", db: 3))
    #expect(parsed("redis://cache:7000/") == RedisURL(host: "cache", port: 7000, db: 0))
    #expect(parsed("REDIS://Cache.Local") == RedisURL(host: "cache.local"))
}

@Test func passwordOnlyAndUserWithPassword() {
    #expect(parsed("redis://secret@host:6379/1") == RedisURL(user: nil, password: "secret", host: "host", port: 6379, db: 1))
    #expect(parsed("redis://:secret@host") == RedisURL(user: nil, password: "secret", host: "host"))
    #expect(parsed("redis://app:secret@host/15") == RedisURL(user: "app", password: "secret", host: "host", db: 15))
}

@Test func passwordsArePercentDecodedAndMayContainSeparators() {
    #expect(parsed("redis://app:p%40ss%2Fw%3Ard%25@host")?.password == "p@ss/w:rd%")
    #expect(parsed("redis://%61pp:x@host")?.user == "app")
    #expect(parsed("redis://:p@ss/w#rd@host:6379/2") == RedisURL(password: "p@ss/w#rd", host: "host", port: 6379, db: 2))
    #expect(parsed("redis://:%C3%A9t%C3%A9@host")?.password == "été")
}

@Test func ipv6RedisHostsNeedBrackets() {
    #expect(parsed("redis://[::1]:6380/4") == RedisURL(host: "::1", port: 6380, db: 4))
    #expect(parsed("redis://pw@[2001:db8::7]") == RedisURL(password: "pw", host: "2001:db8::7"))
    #expect(failure("redis://::1:6379") == "IPv6 host must be in brackets, e.g. redis://[::1]:6379")
    #expect(failure("redis://[::1:6379") == "missing ']' after the IPv6 address in '[::1:6379'")
}

@Test(arguments: [
    ("", "empty url; expected redis://[user:]password@host[:port][/db]"),
    ("localhost:6379", "'localhost:6379' is not a url; expected redis://[user:]password@host[:port][/db]"),
    ("http://host", "unsupported scheme 'http'; expected redis://[user:]password@host[:port][/db]"),
    ("redis://", "missing host; expected redis://[user:]password@host[:port][/db]"),
    ("redis://pw@", "missing host; expected redis://[user:]password@host[:port][/db]"),
    ("redis://@host", "empty credentials before '@'; expected redis://[user:]password@host[:port][/db]"),
    ("redis://user:@host", "empty password before '@'; expected redis://[user:]password@host[:port][/db]"),
    ("redis://:pw@:6379", "empty host in ':6379'; expected redis://[user:]password@host[:port][/db]"),
    ("redis://host:0", "port 0 is out of range 1-65535"),
    ("redis://host:70000", "port 70000 is out of range 1-65535"),
    ("redis://host:", "missing port number after ':'"),
    ("redis://host/16", "database must be an integer 0-15, got '16'"),
    ("redis://host/-1", "database must be an integer 0-15, got '-1'"),
    ("redis://host/db", "database must be an integer 0-15, got 'db'"),
    ("redis://host/0/x", "database must be an integer 0-15, got '0/x'"),
    ("redis://host?timeout=1", "unexpected '?timeout=1'; query parameters and fragments are not supported"),
    ("redis://:p%4@host", "password: bad percent-encoding: '%' must be followed by two hex digits"),
    ("redis://:%FF@host", "password: percent-encoded bytes are not valid UTF-8"),
    ("redis://ho_st", "'ho_st' is not a valid host name; use letters, digits, '-' and '.' (labels of 1-63 characters), an IPv4 address, or [IPv6]"),
])
func badRedisURLsExplainWhy(url: String, message: String) {
    #expect(failure(url) == message)
}

@Test func descriptionNeverShowsThePassword() {
    let url = RedisURL(user: "app", password: "hunter2", host: "::1", port: 6379, db: 3)
    #expect(url.description == "redis://app:***@[::1]:6379/3")
    #expect(RedisURL(password: "hunter2", host: "h").description == "redis://***@h:6379/0")
    #expect(RedisURL(host: "h").description == "redis://h:6379/0")
}

// MARK: single-node urls as one seed

@Test func aSingleNodeURLIsOneSeedAndNotACluster() throws {
    let url = try #require(parsed("rediss://app:pw@cache:6380/2"))
    #expect(!url.cluster)
    #expect(url.tls)
    #expect(url.seeds == [HostPort(host: "cache", port: 6380)])
    #expect(url.host == "cache" && url.port == 6380)
    #expect(url.scheme == "rediss")
}

@Test func severalHostsInASingleNodeURLPointToTheClusterScheme() {
    #expect(failure("redis://pw@h1:6379,h2:6379") == "several hosts in 'h1:6379,h2:6379' need a cluster url: expected redis+cluster://[user:]password@host:port[,host:port...]")
}

// MARK: cluster urls

private func seeds(_ list: String) -> [HostPort] {
    list.split(separator: " ").map { try! HostPort.parse(String($0)).get() }
}

@Test func clusterURLListsItsSeedsInOrder() throws {
    let url = try #require(parsed("redis+cluster://:pw@127.0.0.1:7000,127.0.0.1:7001,127.0.0.1:7002"))
    #expect(url == RedisURL(password: "pw", seeds: seeds("127.0.0.1:7000 127.0.0.1:7001 127.0.0.1:7002"), cluster: true))
    #expect(url.cluster && !url.tls)
    #expect(url.host == "127.0.0.1" && url.port == 7000, "host/port stay the first seed for code that reads one address")
    #expect(url.db == 0)
}

@Test func clusterSeedsTakeTheDefaultPortNamesAndBracketedIPv6() throws {
    let url = try #require(parsed("REDIS+CLUSTER://app:s3cret@Cache-A,cache-b:7001,[::1]:7002,[2001:db8::7]"))
    #expect(url.user == "app" && url.password == "s3cret")
    #expect(url.seeds == [HostPort(host: "cache-a", port: 6379), HostPort(host: "cache-b", port: 7001),
                          HostPort(host: "::1", port: 7002), HostPort(host: "2001:db8::7", port: 6379)])
}

@Test func clusterURLWithoutCredentialsOrWithDatabaseZero() throws {
    #expect(parsed("redis+cluster://10.0.0.1:7000") == RedisURL(seeds: seeds("10.0.0.1:7000"), cluster: true))
    #expect(parsed("redis+cluster://10.0.0.1:7000,10.0.0.2:7000/0")?.seeds.count == 2)
    #expect(parsed("redis+cluster://10.0.0.1:7000/")?.db == 0)
}

@Test func tlsClusterURL() throws {
    let url = try #require(parsed("rediss+cluster://pw@redis-1.internal:6380,redis-2.internal:6380"))
    #expect(url.tls && url.cluster)
    #expect(url.scheme == "rediss+cluster")
    #expect(url.description == "rediss+cluster://***@redis-1.internal:6380,redis-2.internal:6380")
}

@Test func clusterPasswordsMayHoldCommasAndAtSigns() throws {
    let url = try #require(parsed("redis+cluster://:p@ss,w/rd@h1:7000,h2:7001"))
    #expect(url.password == "p@ss,w/rd")
    #expect(url.seeds == seeds("h1:7000 h2:7001"))
}

@Test func sixtyFourSeedsAreAccepted() throws {
    let list = (1...64).map { "10.0.0.\($0):7000" }.joined(separator: ",")
    #expect(parsed("redis+cluster://pw@" + list)?.seeds.count == 64)
}

@Test(arguments: [
    ("redis+cluster://", "missing host; expected redis+cluster://[user:]password@host:port[,host:port...]"),
    ("redis+cluster://pw@", "missing host; expected redis+cluster://[user:]password@host:port[,host:port...]"),
    ("redis+cluster://pw@h1:7000,,h2:7001", "seed 2 of 'h1:7000,,h2:7001' is empty; seeds are host:port separated by single commas"),
    ("redis+cluster://pw@h1:7000,", "seed 2 of 'h1:7000,' is empty; seeds are host:port separated by single commas"),
    ("redis+cluster://pw@,h1:7000", "seed 1 of ',h1:7000' is empty; seeds are host:port separated by single commas"),
    ("redis+cluster://pw@h1:7000, h2:7001", "seed ' h2:7001' contains a space; separate seeds with commas alone, e.g. h1:7000,h2:7000"),
    ("redis+cluster://pw@h1:7000,h2:7001,h1:7000", "duplicate seed 'h1:7000': the same address as seed 1, h1:7000; list each node once"),
    ("redis+cluster://pw@h1,h1:6379", "duplicate seed 'h1:6379': the same address as seed 1, h1:6379; list each node once"),
    ("redis+cluster://pw@[::1]:7000,[0:0::1]:7000", "duplicate seed '[0:0::1]:7000': the same address as seed 1, [::1]:7000; list each node once"),
    ("redis+cluster://pw@H1:7000,h1:7000", "duplicate seed 'h1:7000': the same address as seed 1, h1:7000; list each node once"),
    ("redis+cluster://pw@h1:7000,h2:0", "seed 'h2:0': port 0 is out of range 1-65535"),
    ("redis+cluster://pw@h1:7000,h2:700000", "seed 'h2:700000': port 700000 is out of range 1-65535"),
    ("redis+cluster://pw@h1:x", "seed 'h1:x': port 'x' is not a number; expected 1-65535"),
    ("redis+cluster://pw@h1:", "seed 'h1:': missing port number after ':'"),
    ("redis+cluster://pw@:7000", "seed ':7000': empty host in ':7000'; expected redis+cluster://[user:]password@host:port[,host:port...]"),
    ("redis+cluster://pw@::1:7000", "seed '::1:7000': IPv6 host must be in brackets, e.g. redis+cluster://[::1]:7000"),
    ("redis+cluster://pw@h1:7000,[::1", "seed '[::1': missing ']' after the IPv6 address in '[::1'"),
    ("redis+cluster://pw@h1:7000/3", "a Redis Cluster has only database 0, got '/3'; remove it from the url"),
    ("redis+cluster://pw@h1:7000/x", "a Redis Cluster has only database 0, got '/x'; remove it from the url"),
    ("redis+cluster://pw@h1:7000,redis://pw@h2:7001", "a url has one scheme, written once before the first seed; found 'redis://' after a ','; expected redis+cluster://[user:]password@host:port[,host:port...]"),
    ("redis+cluster://h1:7000,REDISS+CLUSTER://h2:7001", "a url has one scheme, written once before the first seed; found 'REDISS+CLUSTER://' after a ','; expected redis+cluster://[user:]password@host:port[,host:port...]"),
    ("redis://pw@h1,redis://pw@h2", "a url has one scheme, written once before the first seed; found 'redis://' after a ','; expected redis+cluster://[user:]password@host:port[,host:port...]"),
    ("redis-cluster://h1:7000", "unsupported scheme 'redis-cluster'; expected redis+cluster://[user:]password@host:port[,host:port...] (rediss+cluster:// for TLS)"),
    ("redis+cluster://@h1:7000", "empty credentials before '@'; expected redis+cluster://[user:]password@host:port[,host:port...]"),
    ("redis+cluster://h1:7000?read=replica", "unexpected '?read=replica'; query parameters and fragments are not supported"),
])
func badClusterURLsExplainWhy(url: String, message: String) {
    #expect(failure(url) == message)
}

@Test func moreThanSixtyFourSeedsAreRefused() {
    let list = (1...65).map { "10.0.0.\($0):7000" }.joined(separator: ",")
    #expect(failure("redis+cluster://pw@" + list) == "too many seeds: 65, at most 64; a few nodes per shard are enough, the cluster names the rest")
}

@Test func clusterDescriptionListsEverySeedNeverThePassword() {
    let url = RedisURL(password: "hunter2", seeds: seeds("127.0.0.1:7000 127.0.0.1:7001"), cluster: true)
    #expect(url.description == "redis+cluster://***@127.0.0.1:7000,127.0.0.1:7001")
    let withUser = RedisURL(user: "app", password: "hunter2", seeds: seeds("[::1]:7000 h:7001"), tls: true, cluster: true)
    #expect(withUser.description == "rediss+cluster://app:***@[::1]:7000,h:7001")
    #expect(RedisURL(seeds: seeds("h:7000"), cluster: true).description == "redis+cluster://h:7000")
}

@Test func parsedClusterDescriptionParsesBackToTheSameSeeds() throws {
    let url = try #require(parsed("redis+cluster://10.0.0.1:7000,[::1]:7001,cache"))
    #expect(parsed(url.description) == url)
}

/// The fuzzer's kind of input: a value of a hundred thousand commas is refused as too many
/// seeds, or read as a password, and a scheme after the last comma is still found.
@Test func aHundredThousandCommasGetAClearAnswer() {
    let commas = String(repeating: ",", count: 100_000)
    #expect(failure("redis+cluster://pw@h1" + commas) == "too many seeds: 100001, at most 64; a few nodes per shard are enough, the cluster names the rest")
    #expect(parsed("redis+cluster://:" + commas + "@h1")?.password == commas, "a password may be any text")
    #expect(failure("redis+cluster://pw@h1" + commas + "redis://h2") == "a url has one scheme, written once before the first seed; found 'redis://' after a ','; expected redis+cluster://[user:]password@host:port[,host:port...]")
}
