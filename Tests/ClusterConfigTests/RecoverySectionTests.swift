@testable import ClusterConfig
import NIOCore
import Testing

@Test func recoveryIsOffWithSocketIODefaultsWhenAbsent() throws {
    let config = try ClusterConfig.parse(oneNode, file: "c.conf")
    #expect(config.recovery == RecoverySettings())
    #expect(config.recovery.enabled == false)
    #expect(config.recovery.maxDisconnection == .milliseconds(120_000))
    #expect(config.recovery.roomMessages == 1000)
    #expect(config.recovery.historyBytes == 67_108_864)
    #expect(config.recovery.catchUp == .milliseconds(1000))
}

@Test func everyRecoveryKeyIsRead() throws {
    let text = """
        [recovery]
        enabled = on
        max_disconnection = 30000   # half a minute
        room_messages = 200
        history_bytes = 1048576
        catch_up = 250
        """
    let config = try ClusterConfig.parse(text + "\n" + oneNode, file: "c.conf")
    #expect(config.recovery.enabled)
    #expect(config.recovery.maxDisconnection == .milliseconds(30_000))
    #expect(config.recovery.roomMessages == 200)
    #expect(config.recovery.historyBytes == 1_048_576)
    #expect(config.recovery.catchUp == .milliseconds(250))
    #expect(try ClusterConfig.parse("[recovery]\nenabled = off\n" + oneNode, file: "c.conf").recovery.enabled == false)
}

@Test(arguments: ["yes", "true", "1", "ON", "On"])
func enabledTakesOnlyOnOrOff(value: String) {
    #expect(configError("[recovery]\nenabled = \(value)\n" + oneNode)?.description == "cluster.conf:2: 'enabled' in [recovery] must be on or off, got '\(value)'")
}

@Test(arguments: [
    ("max_disconnection", "milliseconds"), ("room_messages", "messages"), ("history_bytes", "bytes"), ("catch_up", "milliseconds"),
])
func everyRecoveryNumberRejectsZeroNegativesAndUnits(key: String, unit: String) {
    #expect(configError(oneNode + "[recovery]\n\(key) = 0\n")?.description == "cluster.conf:4: '\(key)' in [recovery] must be a positive integer (\(unit)), got 0")
    #expect(configError("[recovery]\n\(key) = -5\n" + oneNode)?.description == "cluster.conf:2: '\(key)' in [recovery] must be a positive integer (\(unit)), got '-5'")
    #expect(configError("[recovery]\n\(key) = 5k\n" + oneNode)?.description == "cluster.conf:2: '\(key)' in [recovery] must be a plain integer in \(unit) without a unit suffix, got '5k'")
    #expect(configError("[recovery]\n\(key) = 99999999999\n" + oneNode)?.description == "cluster.conf:2: '\(key)' in [recovery] is too large: '99999999999' (maximum 2147483647)")
    #expect(configError("[recovery]\n\(key) =\n" + oneNode)?.description == "cluster.conf:2: empty value for '\(key)' in [recovery]; expected a positive integer (\(unit))")
}

@Test func recoverySectionRulesLikeTheOthers() {
    #expect(configError("[recovery]\nenabled = on\n[recovery]\n" + oneNode)?.description == "cluster.conf:3: duplicate section [recovery] (first at line 1); put all its keys in one section")
    #expect(configError("[recovery]\ncatch_up = 1\ncatch_up = 2\n" + oneNode)?.description == "cluster.conf:3: duplicate key 'catch_up' in [recovery] (first set at line 2)")
    #expect(configError("[recovery]\nenabled =\n" + oneNode)?.description == "cluster.conf:2: empty value for 'enabled' in [recovery]; expected on or off")
    #expect(configError("[recovery]\nmax-disconnection = 5\n" + oneNode)?.message.hasSuffix("did you mean 'max_disconnection'?") == true)
    #expect(configError("[recovery]\nbuffer_ms = 5\n" + oneNode)?.description == "cluster.conf:2: unknown key 'buffer_ms' in [recovery]; valid keys: enabled, max_disconnection, room_messages, history_bytes, catch_up ('buffer_ms' belongs in [redis] or [mesh])")
    #expect(configError("max_disconnection = 5\n" + oneNode)?.description == "cluster.conf:1: 'max_disconnection' is set before any [section] header; put it under [recovery]")
    #expect(configError("[Recovery]\n" + oneNode)?.message.hasSuffix("did you mean [recovery]?") == true)
}

@Test func summaryShowsRecovery() throws {
    let summary = try ClusterConfig.parse("[recovery]\nenabled = on\nroom_messages = 50\n" + oneNode, file: "c.conf").summary()
    #expect(summary.contains("recovery:\n  enabled = on\n  max_disconnection = 120000 ms\n  room_messages = 50\n  history_bytes = 67108864 bytes\n  catch_up = 1000 ms"))
}
