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
