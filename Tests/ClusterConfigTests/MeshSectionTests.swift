@testable import ClusterConfig
import NIOCore
import Testing

@Test func meshSectionDefaultsWhenAbsent() throws {
    let config = try ClusterConfig.parse(oneNode, file: "c.conf")
    #expect(config.mesh == MeshSettings())
    #expect(config.mesh.pingInterval == .milliseconds(1000))
    #expect(config.mesh.bufferMessages == 10_000)
    #expect(config.mesh.bufferTime == .milliseconds(5000))
    #expect(config.mesh.maxFrame == 4_194_304)
    #expect(config.mesh.reconnectMax == .milliseconds(2000))
    #expect(ClusterConfig().mesh == MeshSettings())
}

@Test func everyMeshKeyIsRead() throws {
    let text = """
        [mesh]
        ping_interval = 250
        buffer_messages = 50
        buffer_ms = 1500    # short outages only
        max_frame = 2000000
        reconnect_max = 30000
        """
    let config = try ClusterConfig.parse(text + "\n" + oneNode, file: "c.conf")
    #expect(config.mesh.pingInterval == .milliseconds(250))
    #expect(config.mesh.bufferMessages == 50)
    #expect(config.mesh.bufferTime == .milliseconds(1500))
    #expect(config.mesh.maxFrame == 2_000_000)
    #expect(config.mesh.reconnectMax == .milliseconds(30_000))
    #expect(config.engine == EngineSettings())
}

@Test(arguments: [
    ("ping_interval", "milliseconds"), ("buffer_messages", "messages"), ("buffer_ms", "milliseconds"),
    ("max_frame", "bytes"), ("reconnect_max", "milliseconds"),
])
func everyMeshNumberRejectsZeroAndNegatives(key: String, unit: String) {
    #expect(configError(oneNode + "[mesh]\n\(key) = 0\n")?.description == "cluster.conf:4: '\(key)' in [mesh] must be a positive integer (\(unit)), got 0")
    #expect(configError("[mesh]\n\(key) = -1\n" + oneNode)?.description == "cluster.conf:2: '\(key)' in [mesh] must be a positive integer (\(unit)), got '-1'")
}

@Test(arguments: [
    ("ping_interval = 1s", "cluster.conf:3: 'ping_interval' in [mesh] must be a plain integer in milliseconds without a unit suffix, got '1s'"),
    ("max_frame = 4MB", "cluster.conf:3: 'max_frame' in [mesh] must be a plain integer in bytes without a unit suffix, got '4MB'"),
    ("buffer_messages = lots", "cluster.conf:3: 'buffer_messages' in [mesh] must be a positive integer (messages), got 'lots'"),
    ("buffer_ms = 99999999999", "cluster.conf:3: 'buffer_ms' in [mesh] is too large: '99999999999' (maximum 2147483647)"),
    ("reconnect_max =", "cluster.conf:3: empty value for 'reconnect_max' in [mesh]; expected a positive integer (milliseconds)"),
])
func badMeshValuesNameFileAndLine(line: String, expected: String) {
    #expect(configError("# mesh tuning\n[mesh]\n\(line)\n" + oneNode)?.description == expected)
}

@Test func unknownMeshKeyListsTheValidOnes() {
    let error = configError("[mesh]\nping_timeout = 2000\n" + oneNode)
    #expect(error?.description == "cluster.conf:2: unknown key 'ping_timeout' in [mesh]; valid keys: ping_interval, buffer_messages, buffer_ms, max_frame, reconnect_max, tls, tls_ca, tls_cert, tls_key ('ping_timeout' belongs in [engineio])")
    let hyphen = configError("[mesh]\nmax-frame = 5000000\n" + oneNode)
    #expect(hyphen?.message.hasSuffix("did you mean 'max_frame'?") == true)
}

@Test func meshSectionRulesLikeTheOthers() {
    #expect(configError("[mesh]\nbuffer_ms = 1\n[mesh]\n" + oneNode)?.description == "cluster.conf:3: duplicate section [mesh] (first at line 1); put all its keys in one section")
    #expect(configError("[mesh]\nbuffer_ms = 1\nbuffer_ms = 2\n" + oneNode)?.description == "cluster.conf:3: duplicate key 'buffer_ms' in [mesh] (first set at line 2)")
    #expect(configError("[mesh x]\n" + oneNode)?.description == "cluster.conf:1: section [mesh] takes no name; got '[mesh x]'")
    #expect(configError("[Mesh]\n" + oneNode)?.message.hasSuffix("did you mean [mesh]?") == true)
    #expect(configError("reconnect_max = 5\n" + oneNode)?.description == "cluster.conf:1: 'reconnect_max' is set before any [section] header; put it under [mesh]")
}

@Test func keysOfSeveralSectionsNameEveryHome() {
    #expect(configError("ping_interval = 5\n" + oneNode)?.description == "cluster.conf:1: 'ping_interval' is set before any [section] header; put it under [engineio] or [mesh]")
    #expect(configError("[limits]\nping_interval = 5\n" + oneNode)?.message.hasSuffix("('ping_interval' belongs in [engineio] or [mesh])") == true)
}

@Test func pingIntervalIsSeparatePerSection() throws {
    let config = try ClusterConfig.parse("[engineio]\nping_interval = 30000\n[mesh]\nping_interval = 500\n" + oneNode, file: "c.conf")
    #expect(config.engine.pingInterval == .milliseconds(30_000))
    #expect(config.mesh.pingInterval == .milliseconds(500))
}

// MARK: max_frame versus max_payload

@Test func maxFrameMustExceedMaxPayloadPlusOverhead() {
    let text = "[engineio]\nmax_payload = 100000\n[mesh]\nmax_frame = 101024\n" + oneNode
    #expect(configError(text)?.description == "cluster.conf:4: 'max_frame' in [mesh] is 101024 bytes, but must be larger than [engineio] max_payload + 1024 = 101024 bytes, so the largest client message fits in one mesh frame; set max_frame = 101025 or more")
}

@Test func maxFrameJustAboveTheBoundIsAccepted() throws {
    let config = try ClusterConfig.parse("[engineio]\nmax_payload = 100000\n[mesh]\nmax_frame = 101025\n" + oneNode, file: "c.conf")
    #expect(config.mesh.maxFrame == 101_025)
}

@Test func maxFrameRuleHoldsWhicheverSectionComesFirst() {
    let error = configError("[mesh]\nmax_frame = 2048\n\n[engineio]\nmax_payload = 1024\n" + oneNode)
    #expect(error?.line == 2)
    #expect(error?.message.hasPrefix("'max_frame' in [mesh] is 2048 bytes, but must be larger than [engineio] max_payload + 1024 = 2048 bytes") == true)
}

@Test func tooSmallMaxFrameIsCheckedAgainstTheDefaultPayload() {
    let error = configError(oneNode + "[mesh]\nmax_frame = 65536\n")
    #expect(error?.description == "cluster.conf:4: 'max_frame' in [mesh] is 65536 bytes, but must be larger than [engineio] max_payload + 1024 = 1001024 bytes, so the largest client message fits in one mesh frame; set max_frame = 1001025 or more")
}

@Test func maxPayloadOverTheDefaultFrameIsReportedAtMaxPayload() {
    let error = configError("[cluster]\nfanout = mesh\n[engineio]\nping_timeout = 5000\nmax_payload = 4193280\n" + oneNode)
    #expect(error?.description == "cluster.conf:5: 'max_payload' in [engineio] is 4193280 bytes, too large for a mesh frame: [mesh] max_frame (default 4194304 bytes) must be larger than max_payload + 1024; lower max_payload or set max_frame = 4194305 or more")
}

@Test func maxPayloadJustUnderTheDefaultFrameIsAccepted() throws {
    let config = try ClusterConfig.parse("[engineio]\nmax_payload = 4193279\n" + oneNode, file: "c.conf")
    #expect(config.engine.maxPayload == 4_193_279)
    #expect(config.mesh.maxFrame == 4_194_304)
}

@Test func largePayloadWithARaisedFrameIsAccepted() throws {
    let config = try ClusterConfig.parse("[engineio]\nmax_payload = 16000000\n[mesh]\nmax_frame = 16777216\n" + oneNode, file: "c.conf")
    #expect(config.engine.maxPayload == 16_000_000)
    #expect(config.mesh.maxFrame == 16_777_216)
}

@Test func largestNumbersDoNotOverflowTheFrameRule() {
    let error = configError("[engineio]\nmax_payload = 2147483647\n[mesh]\nmax_frame = 2147483647\n" + oneNode)
    #expect(error?.line == 4)
    #expect(error?.message.contains("max_payload + 1024 = 2147484671 bytes") == true)
}

@Test func frameRuleDoesNotApplyToRedisFanout() throws {
    let text = """
        [cluster]
        fanout = redis
        [redis]
        url = redis://127.0.0.1
        [engineio]
        max_payload = 8000000
        [mesh]
        max_frame = 4096
        """
    let config = try ClusterConfig.parse(text + "\n" + oneNode, file: "c.conf")
    #expect(config.engine.maxPayload == 8_000_000)
    #expect(config.mesh.maxFrame == 4096)
}

@Test func summaryListsMeshSettings() throws {
    let summary = try ClusterConfig.parse("[mesh]\nbuffer_messages = 77\n" + oneNode, file: "c.conf").summary()
    let lines = summary.split(separator: "\n").map(String.init)
    let start = try #require(lines.firstIndex(of: "mesh:"))
    #expect(Array(lines[start...].prefix(6)) == [
        "mesh:",
        "  ping_interval = 1000 ms",
        "  buffer_messages = 77",
        "  buffer_ms = 5000 ms",
        "  max_frame = 4194304 bytes",
        "  reconnect_max = 2000 ms",
    ])
}

@Test func summarySaysMeshSettingsAreUnusedWithRedis() throws {
    let summary = try ClusterConfig.parse("[cluster]\nfanout = redis\n[redis]\nurl = redis://localhost\n" + oneNode, file: "c.conf").summary()
    #expect(summary.contains("\nmesh: (unused: fanout = redis)\n"))
}
