import Testing
@testable import ClusterConfig

private func hp(_ s: String) -> HostPort? { try? HostPort.parse(s).get() }

@Test func parsesIPv4HostNamesAndIPv6() {
    #expect(hp("127.0.0.1:6001") == HostPort(host: "127.0.0.1", port: 6001))
    #expect(hp("Chat-1.Example.org:443") == HostPort(host: "chat-1.example.org", port: 443))
    #expect(hp("localhost:1") == HostPort(host: "localhost", port: 1))
    #expect(hp("[2001:db8::1]:65535") == HostPort(host: "2001:db8::1", port: 65535))
    #expect(hp("[::ffff:10.0.0.1]:80") == HostPort(host: "::ffff:10.0.0.1", port: 80))
    #expect(hp("[1:2:3:4:5:6:7:8]:80") != nil)
    #expect(hp("[1:2:3:4:5:6:7:8:9]:80") == nil)
    #expect(hp("[1:2:3:4:5:6:7]:80") == nil)
    #expect(hp("[12345::]:80") == nil)
    #expect(hp("[fe80::1%eth0]:80") == nil)
}

@Test func descriptionBracketsIPv6() {
    #expect(HostPort(host: "127.0.0.1", port: 6001).description == "127.0.0.1:6001")
    #expect(HostPort(host: "::1", port: 6001).description == "[::1]:6001")
    #expect(HostPort(host: "example.org", port: 80).description == "example.org:80")
}

@Test(arguments: [
    ("127.0.0.1", true), ("127.255.10.3", true), ("localhost", true), ("LOCALHOST", true),
    ("::1", true), ("0:0:0:0:0:0:0:1", true), ("::ffff:127.0.0.5", true),
    ("128.0.0.1", false), ("10.0.0.1", false), ("0.0.0.0", false), ("::", false),
    ("::2", false), ("example.org", false), ("localhost.example.org", false), ("::ffff:10.0.0.1", false),
])
func loopbackDetection(host: String, loopback: Bool) {
    #expect(HostPort(host: host, port: 1).isLoopback == loopback)
}

@Test func parsedAddressesRoundTripThroughDescription() throws {
    for text in ["10.1.2.3:7001", "[::1]:7001", "node-2.internal:7001", "[2001:db8::42]:1"] {
        let parsed = try HostPort.parse(text).get()
        #expect(parsed.description == text)
        #expect(try HostPort.parse(parsed.description).get() == parsed)
    }
}
