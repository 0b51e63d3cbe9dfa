@testable import ClusterConfig
import NIOCore
import Testing

/// A cluster.conf that sets every key (before `[cluster] drain_timeout` and the `[redis]`
/// buffer keys existed) to its default, with a real Redis URL and a second node.
let shippedExample = """
    # chatmesh cluster configuration
    [cluster]
    fanout = mesh                 # mesh (default) | redis
    secret = change-me            # shared mesh key; required when any mesh address is not loopback

    [redis]                       # read when fanout = redis
    url = redis://app:s3cret@redis.internal:6380/2
    channel_prefix =              # default empty

    [engineio]
    ping_interval = 25000         # ms
    ping_timeout = 20000          # ms
    max_payload = 1000000         # bytes, per Engine.IO payload / WebSocket message
    upgrade_timeout = 10000       # ms
    connect_timeout = 45000       # ms, Engine.IO open -> Socket.IO CONNECT
    allowed_origins = *           # "*" (default, development) or space/comma separated origins

    [limits]
    username_max = 64             # characters (Unicode scalars), min 1
    text_max = 4096               # characters
    roomid_max = 128              # printable characters, min 1
    say_rate = 20                 # says per second per connection (token bucket)
    say_burst = 40
    outbound_buffer = 1048576     # bytes queued to one client before it is cut off
    max_connections = 10000       # per node
    max_write_delay = 10          # ms a broadcast may wait under load to share a write; 0 = every tick

    [mesh]                        # node-to-node links (fanout = mesh)
    ping_interval = 1000          # ms between mesh PINGs; a link silent for 2 intervals is dead
    buffer_messages = 10000       # PUBs kept per peer while its link is down
    buffer_ms = 5000              # ms they are kept
    max_frame = 4194304           # bytes; must be larger than [engineio] max_payload + 1024
    reconnect_max = 2000          # ms, cap of the exponential reconnect backoff

    [node a1]
    listen = 127.0.0.1:6001       # Socket.IO clients, the page, /healthz, /metrics
    mesh = 127.0.0.1:7001         # node-to-node links

    [node a2]
    listen = 127.0.0.1:6002
    mesh = 127.0.0.1:7002
    """

@Test func shippedExampleParsesEveryKey() throws {
    let config = try ClusterConfig.parse(shippedExample, file: "cluster.conf")
    #expect(config.fanout == .mesh)
    #expect(config.secret == "change-me")
    #expect(config.redisURL == RedisURL(user: "app", password: "s3cret", host: "redis.internal", port: 6380, db: 2))
    #expect(config.channelPrefix == "")
    #expect(config.engine.pingInterval == .milliseconds(25_000))
    #expect(config.engine.pingTimeout == .milliseconds(20_000))
    #expect(config.engine.maxPayload == 1_000_000)
    #expect(config.engine.upgradeTimeout == .milliseconds(10_000))
    #expect(config.engine.connectTimeout == .milliseconds(45_000))
    #expect(config.engine.allowedOrigins == nil)
    #expect(config.limits.usernameMax == 64)
    #expect(config.limits.textMax == 4096)
    #expect(config.limits.roomIDMax == 128)
    #expect(config.limits.sayRate == 20)
    #expect(config.limits.sayBurst == 40)
    #expect(config.limits.outboundBuffer == 1_048_576)
    #expect(config.limits.maxConnections == 10_000)
    #expect(config.limits.maxWriteDelay == .milliseconds(10))
    #expect(config.mesh.pingInterval == .milliseconds(1000))
    #expect(config.mesh.bufferMessages == 10_000)
    #expect(config.mesh.bufferTime == .milliseconds(5000))
    #expect(config.mesh.maxFrame == 4_194_304)
    #expect(config.mesh.reconnectMax == .milliseconds(2000))
    #expect(config.nodes == [
        NodeEntry(name: "a1", listen: HostPort(host: "127.0.0.1", port: 6001), mesh: HostPort(host: "127.0.0.1", port: 7001), line: 35),
        NodeEntry(name: "a2", listen: HostPort(host: "127.0.0.1", port: 6002), mesh: HostPort(host: "127.0.0.1", port: 7002), line: 39),
    ])
}

@Test func shippedExampleValuesEqualTheDefaults() throws {
    let config = try ClusterConfig.parse(shippedExample, file: "cluster.conf")
    #expect(config.engine == EngineSettings())
    #expect(config.limits == LimitSettings())
    #expect(config.mesh == MeshSettings())
}

@Test func minimalConfigGetsDocumentedDefaults() throws {
    let config = try ClusterConfig.parse(oneNode, file: "min.conf")
    #expect(config.fanout == .mesh)
    #expect(config.secret == nil)
    #expect(config.redisURL == nil)
    #expect(config.channelPrefix == "")
    #expect(config.engine.pingInterval == .milliseconds(25_000))
    #expect(config.engine.pingTimeout == .milliseconds(20_000))
    #expect(config.engine.maxPayload == 1_000_000)
    #expect(config.engine.upgradeTimeout == .milliseconds(10_000))
    #expect(config.engine.connectTimeout == .milliseconds(45_000))
    #expect(config.engine.allowedOrigins == nil)
    #expect(config.limits.usernameMax == 64)
    #expect(config.limits.textMax == 4096)
    #expect(config.limits.roomIDMax == 128)
    #expect(config.limits.sayRate == 20)
    #expect(config.limits.sayBurst == 40)
    #expect(config.limits.outboundBuffer == 1_048_576)
    #expect(config.limits.maxConnections == 10_000)
    #expect(config.nodes == [NodeEntry(name: "a1", listen: HostPort(host: "127.0.0.1", port: 6001), mesh: nil, line: 1)])
}

@Test func nonDefaultValuesAreRead() throws {
    let text = """
        [cluster]
        fanout = redis
        [redis]
        url = redis://localhost
        channel_prefix = chat:
        [engineio]
        ping_interval = 1000
        max_payload = 4096
        [limits]
        say_rate = 5
        max_connections = 3
        [node n-1.x_y]
        listen = 0.0.0.0:8080
        """
    let config = try ClusterConfig.parse(text, file: "c.conf")
    #expect(config.fanout == .redis)
    #expect(config.redisURL == RedisURL(host: "localhost"))
    #expect(config.channelPrefix == "chat:")
    #expect(config.engine.pingInterval == .milliseconds(1000))
    #expect(config.engine.pingTimeout == .milliseconds(20_000))
    #expect(config.engine.maxPayload == 4096)
    #expect(config.limits.sayRate == 5)
    #expect(config.limits.maxConnections == 3)
    #expect(config.nodes.map(\.name) == ["n-1.x_y"])
}

@Test func crlfLineEndingsBomAndTabsAreAccepted() throws {
    let text = "\u{FEFF}[cluster]\r\n\tfanout\t=\tmesh\t# tabbed\r\n\r\n[node a1]\r\n  listen =\t127.0.0.1:6001  \r\n"
    let config = try ClusterConfig.parse(text, file: "dos.conf")
    #expect(config.fanout == .mesh)
    #expect(config.nodes.first?.listen == HostPort(host: "127.0.0.1", port: 6001))
    #expect(config.nodes.first?.line == 4)
}

@Test func crlfErrorsStillCountLinesCorrectly() {
    let error = configError("[cluster]\r\nfanout = mesh\r\nbogus = 1\r\n", file: "dos.conf")
    #expect(error?.description.hasPrefix("dos.conf:3: unknown key 'bogus' in [cluster]") == true)
}

@Test func hashStartsACommentOnlyAfterWhitespace() throws {
    let glued = try ClusterConfig.parse("[cluster]\nsecret = abc#def\n" + oneNode, file: "c.conf")
    #expect(glued.secret == "abc#def")
    let spaced = try ClusterConfig.parse("[cluster]\nsecret = abc #def\n" + oneNode, file: "c.conf")
    #expect(spaced.secret == "abc")
    let whole = try ClusterConfig.parse("   # indented comment\n#[bogus]\n" + oneNode, file: "c.conf")
    #expect(whole.nodes.count == 1)
}

@Test func allowedOriginsListIsSplitOnSpacesAndCommasAndNormalized() throws {
    let text = oneNode + "[engineio]\nallowed_origins = http://localhost:6001, HTTPS://Chat.Example.org/  http://[::1]:8080,http://10.0.0.1\n"
    let config = try ClusterConfig.parse(text, file: "c.conf")
    #expect(config.engine.allowedOrigins == [
        "http://localhost:6001", "https://chat.example.org", "http://[::1]:8080", "http://10.0.0.1",
    ])
}

@Test func nodeLookupByName() throws {
    let config = try ClusterConfig.parse(shippedExample, file: "cluster.conf")
    #expect(config.node(named: "a2")?.listen.port == 6002)
    #expect(config.node(named: "A2") == nil)
    #expect(config.node(named: "zz") == nil)
}

@Test func ipv6AddressesAreParsedAndPrinted() throws {
    let text = """
        [node v6]
        listen = [::1]:6001
        mesh = [::1]:7001
        [node v6b]
        listen = [FE80::ABCD]:6001
        mesh = [::1]:7002
        """
    let config = try ClusterConfig.parse(text, file: "c.conf")
    #expect(config.nodes[0].listen == HostPort(host: "::1", port: 6001))
    #expect(config.nodes[0].listen.description == "[::1]:6001")
    #expect(config.nodes[0].mesh?.isLoopback == true)
    #expect(config.nodes[1].listen.host == "fe80::abcd")
}

@Test func emptyFileWithOnlyCommentsHasNoNodes() {
    #expect(configError("# nothing\n\n", file: "e.conf")?.description == "e.conf:0: no [node NAME] section: a cluster needs at least one node, e.g. [node a1] with listen = 127.0.0.1:6001")
}
