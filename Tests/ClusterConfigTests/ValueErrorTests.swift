@testable import ClusterConfig
import NIOCore
import Testing

@Test(arguments: [
    ("abc", "cluster.conf:2: 'ping_interval' in [engineio] must be a positive integer (milliseconds), got 'abc'"),
    ("0", "cluster.conf:2: 'ping_interval' in [engineio] must be a positive integer (milliseconds), got 0"),
    ("000", "cluster.conf:2: 'ping_interval' in [engineio] must be a positive integer (milliseconds), got 000"),
    ("-5", "cluster.conf:2: 'ping_interval' in [engineio] must be a positive integer (milliseconds), got '-5'"),
    ("1.5", "cluster.conf:2: 'ping_interval' in [engineio] must be a positive integer (milliseconds), got '1.5'"),
    ("+5", "cluster.conf:2: 'ping_interval' in [engineio] must be a positive integer (milliseconds), got '+5'"),
    ("25s", "cluster.conf:2: 'ping_interval' in [engineio] must be a plain integer in milliseconds without a unit suffix, got '25s'"),
    ("99999999999999999999999", "cluster.conf:2: 'ping_interval' in [engineio] is too large: '99999999999999999999999' (maximum 2147483647)"),
    ("2147483648", "cluster.conf:2: 'ping_interval' in [engineio] is too large: '2147483648' (maximum 2147483647)"),
])
func badNumbersAreRejectedWithTheirLine(value: String, expected: String) {
    #expect(configError("[engineio]\nping_interval = \(value)\n" + oneNode)?.description == expected)
}

@Test func largestNumberIsAccepted() throws {
    let config = try ClusterConfig.parse("[limits]\noutbound_buffer = 2147483647\nsay_rate = 007\n" + oneNode, file: "c.conf")
    #expect(config.limits.outboundBuffer == 2_147_483_647)
    #expect(config.limits.sayRate == 7)
}

@Test(arguments: ["username_max", "text_max", "roomid_max", "say_rate", "say_burst", "outbound_buffer", "max_connections"])
func everyLimitRejectsZero(key: String) {
    let error = configError("[limits]\n\(key) = 0\n" + oneNode)
    #expect(error?.line == 2)
    #expect(error?.message.hasPrefix("'\(key)' in [limits] must be a positive integer") == true)
}

@Test(arguments: ["0", "000"])
func maxWriteDelayZeroTurnsWritePacingOff(value: String) throws {
    let config = try ClusterConfig.parse("[limits]\nmax_write_delay = \(value)\n" + oneNode, file: "c.conf")
    #expect(config.limits.maxWriteDelay == .milliseconds(0))
}

@Test(arguments: [
    ("-1", "cluster.conf:2: 'max_write_delay' in [limits] must be a whole number (milliseconds), got '-1'"),
    ("10ms", "cluster.conf:2: 'max_write_delay' in [limits] must be a plain integer in milliseconds without a unit suffix, got '10ms'"),
    ("", "cluster.conf:2: empty value for 'max_write_delay' in [limits]; expected a whole number (milliseconds)"),
])
func maxWriteDelayRejectsWhatIsNotAWholeNumberOfMilliseconds(value: String, expected: String) {
    #expect(configError("[limits]\nmax_write_delay = \(value)\n" + oneNode)?.description == expected)
}

@Test(arguments: ["ping_interval", "ping_timeout", "max_payload", "upgrade_timeout", "connect_timeout"])
func everyEngineNumberRejectsNegatives(key: String) {
    let error = configError("[engineio]\n\(key) = -1\n" + oneNode)
    #expect(error?.line == 2)
    #expect(error?.message.hasPrefix("'\(key)' in [engineio] must be a positive integer") == true)
}

@Test func badFanoutValueIsRejected() {
    #expect(configError("[cluster]\nfanout = nats\n" + oneNode)?.description == "cluster.conf:2: bad fanout 'nats'; expected mesh or redis")
    #expect(configError("[cluster]\nfanout = Mesh\n" + oneNode)?.line == 2)
}

@Test(arguments: [
    ("127.0.0.1", "bad listen address: missing port in '127.0.0.1'; expected host:port, e.g. 127.0.0.1:6001"),
    ("127.0.0.1:", "bad listen address: missing port number after ':'"),
    ("127.0.0.1:0", "bad listen address: port 0 is out of range 1-65535"),
    ("127.0.0.1:65536", "bad listen address: port 65536 is out of range 1-65535"),
    ("127.0.0.1:99999999999999999999", "bad listen address: port 99999999999999999999 is out of range 1-65535"),
    ("127.0.0.1:http", "bad listen address: port 'http' is not a number; expected 1-65535"),
    (":6001", "bad listen address: empty host in ':6001'; expected host:port, e.g. 127.0.0.1:6001"),
    ("[]:6001", "bad listen address: empty host in '[]:6001'"),
    ("[::1:6001", "bad listen address: missing ']' after the IPv6 address in '[::1:6001'; expected [IPv6]:port, e.g. [::1]:6001"),
    ("::1]:6001", "bad listen address: unbalanced ']' in '::1]:6001'; IPv6 addresses look like [::1]:6001"),
    ("::1:6001", "bad listen address: IPv6 address must be in brackets: '::1:6001' should look like [::1]:6001"),
    ("[::1]", "bad listen address: missing port in '[::1]'; expected [IPv6]:port, e.g. [::1]:6001"),
    ("[::1]6001", "bad listen address: expected ':port' after ']' in '[::1]6001', e.g. [::1]:6001"),
    ("[1::2::3]:6001", "bad listen address: '1::2::3' is not a valid IPv6 address"),
    ("[127.0.0.1]:6001", "bad listen address: '127.0.0.1' is not a valid IPv6 address"),
    ("256.0.0.1:6001", "bad listen address: '256.0.0.1' is not a valid IPv4 address; expected four numbers 0-255 like 127.0.0.1"),
    ("127.0.1:6001", "bad listen address: '127.0.1' is not a valid IPv4 address; expected four numbers 0-255 like 127.0.0.1"),
    ("010.0.0.1:6001", "bad listen address: '010.0.0.1' is not a valid IPv4 address; expected four numbers 0-255 like 127.0.0.1"),
    ("my_host:6001", "bad listen address: 'my_host' is not a valid host name; use letters, digits, '-' and '.' (labels of 1-63 characters), an IPv4 address, or [IPv6]"),
    ("-host:6001", "bad listen address: '-host' is not a valid host name; use letters, digits, '-' and '.' (labels of 1-63 characters), an IPv4 address, or [IPv6]"),
])
func badAddressesAreRejectedAtTheirLine(address: String, message: String) {
    let error = configError("[node a1]\nlisten = \(address)\n")
    #expect(error?.description == "cluster.conf:2: \(message)")
}

@Test func badMeshAddressNamesTheKey() {
    let error = configError("[node a1]\nlisten = 127.0.0.1:6001\nmesh = localhost\n")
    #expect(error?.description == "cluster.conf:3: bad mesh address: missing port in 'localhost'; expected host:port, e.g. 127.0.0.1:6001")
}

@Test(arguments: [
    ("localhost", "bad origin 'localhost' in allowed_origins; expected http://host[:port] or https://host[:port]"),
    ("ws://example.org", "bad origin 'ws://example.org' in allowed_origins; expected http://host[:port] or https://host[:port]"),
    ("http://example.org/chat", "bad origin 'http://example.org/chat' in allowed_origins: an origin is scheme://host[:port] with no path, query or user"),
    ("http://example.org:0", "bad origin 'http://example.org:0' in allowed_origins: port 0 is out of range 1-65535"),
    ("http://", "bad origin 'http://' in allowed_origins: empty host"),
    ("http://[::1", "bad origin 'http://[::1' in allowed_origins: missing ']' after the IPv6 address"),
    ("* http://a.org", "'*' in allowed_origins cannot be combined with other origins; use '*' alone to allow all"),
])
func badOriginsAreRejected(value: String, message: String) {
    #expect(configError("[engineio]\nallowed_origins = \(value)\n" + oneNode)?.description == "cluster.conf:2: \(message)")
}
