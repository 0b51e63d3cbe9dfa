import Testing
@testable import ClusterConfig

@Test func summaryNeverContainsTheSecretOrRedisPassword() throws {
    let text = """
        [cluster]
        fanout = redis
        secret = topsecret-mesh-key-of-at-least-32-characters
        [redis]
        url = redis://app:redis-pass-42@cache:6379/1
        [node a1]
        listen = 127.0.0.1:6001
        mesh = 10.0.0.1:7001
        """
    let summary = try ClusterConfig.parse(text, file: "c.conf").summary()
    #expect(!summary.contains("topsecret-mesh-key"))
    #expect(!summary.contains("redis-pass-42"))
    #expect(summary.contains("secret: set"))
    #expect(summary.contains("redis: redis://app:***@cache:6379/1"))
}

@Test func summaryListsFanoutNodesAndSettings() throws {
    let summary = try ClusterConfig.parse(shippedExample, file: "cluster.conf").summary()
    let lines = summary.split(separator: "\n").map(String.init)
    #expect(lines.first == "fanout: mesh")
    #expect(lines.contains("secret: set"))
    #expect(lines.contains("nodes (2):"))
    #expect(lines.contains("  a1  listen 127.0.0.1:6001  mesh 127.0.0.1:7001"))
    #expect(lines.contains("  a2  listen 127.0.0.1:6002  mesh 127.0.0.1:7002"))
    #expect(lines.contains("  ping_interval = 25000 ms"))
    #expect(lines.contains("  max_payload = 1000000 bytes"))
    #expect(lines.contains("  allowed_origins = * (any origin)"))
    #expect(lines.contains("  say_rate = 20 per second"))
    #expect(lines.contains("  max_connections = 10000"))
    #expect(!summary.contains("change-me"))
}

@Test func summarySaysWhenSecretIsNotSet() throws {
    let summary = try ClusterConfig.parse(oneNode, file: "c.conf").summary()
    #expect(summary.contains("secret: not set"))
    #expect(summary.contains("redis: not configured"))
    #expect(summary.contains("  a1  listen 127.0.0.1:6001"))
}

@Test func summaryPrintsEveryDurationInTheMillisecondsTheFileGave() throws {
    let text = """
        [cluster]
        drain_timeout = 12345
        [redis]
        buffer_ms = 2345
        [engineio]
        ping_interval = 3456
        ping_timeout = 4567
        upgrade_timeout = 5678
        connect_timeout = 6789
        [limits]
        max_write_delay = 0
        [mesh]
        ping_interval = 789
        buffer_ms = 8901
        reconnect_max = 9012
        [node a1]
        listen = 127.0.0.1:6001
        """
    let lines = try ClusterConfig.parse(text, file: "c.conf").summary().split(separator: "\n").map(String.init)
    let durations = lines.filter { $0.hasSuffix(" ms") }
    #expect(durations == [
        "drain_timeout: 12345 ms",
        "redis buffer: 10000 messages, 2345 ms",
        "  ping_interval = 3456 ms",
        "  ping_timeout = 4567 ms",
        "  upgrade_timeout = 5678 ms",
        "  connect_timeout = 6789 ms",
        "  max_write_delay = 0 ms",
        "  header_timeout = 10000 ms",
        "  ping_interval = 789 ms",
        "  buffer_ms = 8901 ms",
        "  reconnect_max = 9012 ms",
        "  max_disconnection = 120000 ms",
        "  catch_up = 1000 ms",
    ])
}
