import Foundation
import NIOCore
import Testing
@testable import ClusterConfig
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What a reload from one cluster.conf to another changes, and whether each change is live.
@Suite struct ConfigDiffTests {
    /// Three loopback mesh nodes; tests edit a copy of it.
    static let base = """
        [cluster]
        secret = 0123456789abcdef0123456789abcdef-first

        [node a1]
        listen = 127.0.0.1:8001
        mesh = 127.0.0.1:7001

        [node a2]
        listen = 127.0.0.1:8002
        mesh = 127.0.0.1:7002

        [node a3]
        listen = 127.0.0.1:8003
        mesh = 127.0.0.1:7003

        """

    static func config(_ text: String = base) throws -> ClusterConfig {
        try ClusterConfig.parse(text, file: "test.conf")
    }

    /// `base` with `section` (a `[name]` header and its lines) added in front.
    static func config(with section: String) throws -> ClusterConfig {
        try config(section + "\n" + base)
    }

    static func lines(_ diff: ConfigDiff) -> [String] { diff.changes.map(\.description) }

    // MARK: no change

    @Test func equalFilesHaveNoChanges() throws {
        let diff = ConfigDiff(old: try Self.config(), new: try Self.config(), localNode: "a1")
        #expect(diff.isEmpty)
        #expect(diff.description == "no changes")
        #expect(diff.appliedConfig == (try Self.config()))
    }

    /// Comments, blank lines, key spelling of defaults and node order are not changes.
    @Test func layoutAndExplicitDefaultsAreNoChanges() throws {
        let reordered = try Self.config("""
            # the same cluster, written differently
            [node a3]
            listen = 127.0.0.1:8003
            mesh = 127.0.0.1:7003
            [node a2]
            listen = 127.0.0.1:8002
            mesh = 127.0.0.1:7002
            [node a1]
            listen = 127.0.0.1:8001
            mesh = 127.0.0.1:7001
            [limits]
            say_rate = 20
            [cluster]
            secret = 0123456789abcdef0123456789abcdef-first
            """)
        #expect(ConfigDiff(old: try Self.config(), new: reordered, localNode: nil).description == "no changes")
    }

    // MARK: live settings

    /// The chat limits and the room shards' write pacing change live.
    @Test func limitsAndTheWritePacingChangeLive() throws {
        let diff = ConfigDiff(old: try Self.config(), new: try Self.config(with: "[limits]\nsay_rate = 50\nmax_write_delay = 0\ntext_max = 10"), localNode: "a1")
        #expect(Self.lines(diff) == [
            "[limits] text_max: 4096 -> 10 (live)",
            "[limits] say_rate: 20 -> 50 (live)",
            "[limits] max_write_delay: 10 -> 0 (live)",
        ])
        #expect(diff.appliedConfig.limits.sayRate == 50)
        #expect(diff.appliedConfig.limits.textMax == 10)
        #expect(diff.appliedConfig.limits.maxWriteDelay == .zero)
    }

    @Test func limitsOfSocketsAndConnectionsChangeLive() throws {
        let new = try Self.config(with: """
            [limits]
            outbound_buffer = 65536
            max_connections = 10
            header_timeout = 3000
            max_sockets = 100
            fd_reserve = 64
            """)
        let diff = ConfigDiff(old: try Self.config(), new: new, localNode: "a1")
        #expect(diff.changes.count == 5)
        #expect(diff.restartChanges.isEmpty)
        #expect(diff.changes.first?.description == "[limits] outbound_buffer: 1048576 -> 65536 (live)")
        #expect(diff.appliedConfig.limits == new.limits)
    }

    /// Connected sessions keep the heartbeat times their handshake announced; the rest is live.
    @Test func engineTimingsAndAllowedOriginsChangeLive() throws {
        let new = try Self.config(with: """
            [engineio]
            ping_interval = 30000
            connect_timeout = 5000
            allowed_origins = https://chat.example.org, https://b.example.org
            """)
        let diff = ConfigDiff(old: try Self.config(), new: new, localNode: "a2")
        #expect(Self.lines(diff) == [
            "[engineio] ping_interval: 25000 -> 30000 (live: new sessions; connected ones keep what their handshake said)",
            "[engineio] connect_timeout: 45000 -> 5000 (live)",
            "[engineio] allowed_origins: * -> https://chat.example.org https://b.example.org (live)",
        ])
        #expect(diff.appliedConfig.engine == new.engine)
    }

    @Test func meshTimingsBuffersAndFrameCapChangeLive() throws {
        let new = try Self.config(with: """
            [mesh]
            ping_interval = 500
            buffer_messages = 20000
            buffer_ms = 8000
            max_frame = 8388608
            reconnect_max = 4000
            """)
        let diff = ConfigDiff(old: try Self.config(), new: new, localNode: "a1")
        #expect(diff.changes.map(\.name) == ["[mesh] ping_interval", "[mesh] buffer_messages", "[mesh] buffer_ms", "[mesh] max_frame", "[mesh] reconnect_max"])
        #expect(diff.changes.allSatisfy { $0.classification == .live })
        #expect(diff.changes.first?.description == "[mesh] ping_interval: 1000 -> 500 (live)")
    }

    @Test func recoveryBoundsChangeLiveAndEnabledNeedsARestart() throws {
        let old = try Self.config(with: "[recovery]\nenabled = off")
        let new = try Self.config(with: "[recovery]\nenabled = on\nroom_messages = 50\ncatch_up = 2000")
        let diff = ConfigDiff(old: old, new: new, localNode: "a1")
        #expect(Self.lines(diff) == [
            "[recovery] enabled: off -> on (needs restart on every node: it changes what every client receives)",
            "[recovery] room_messages: 1000 -> 50 (live)",
            "[recovery] catch_up: 1000 -> 2000 (live)",
        ])
        #expect(diff.appliedConfig.recovery.enabled == false)
        #expect(diff.appliedConfig.recovery.roomMessages == 50)
        #expect(diff.appliedConfig.recovery.catchUp == .milliseconds(2000))
    }

    @Test func redisBufferChangesLiveAndURLAndTLSNeedRestart() throws {
        let old = try Self.config(with: "[redis]\nurl = redis://:old-password@cache:6379/0")
        let new = try Self.config(with: """
            [redis]
            url = rediss://:new-password@cache:6380/0
            tls_ca = /etc/chatmesh/redis-ca.pem
            buffer_messages = 500
            buffer_ms = 1500
            """)
        let diff = ConfigDiff(old: old, new: new, localNode: "a1")
        #expect(Self.lines(diff) == [
            "[redis] url: redis://***@cache:6379/0 -> rediss://***@cache:6380/0 (needs restart on every node: all nodes must use the same Redis)",
            "[redis] buffer_messages: 10000 -> 500 (live)",
            "[redis] buffer_ms: 5000 -> 1500 (live)",
            "[redis] tls_ca: none -> /etc/chatmesh/redis-ca.pem (needs restart on every node)",
        ])
        #expect(diff.appliedConfig.redisURL == old.redisURL)
        #expect(diff.appliedConfig.redisTLS == nil)
        #expect(diff.appliedConfig.redisBuffer.bufferMessages == 500)
    }

    /// Classic and sharded pub/sub do not reach each other: every node switches together.
    @Test func redisModeNeedsEveryNodeRestarted() throws {
        var old = try Self.config(with: "[redis]\nurl = redis://cache:6379")
        old.fanout = .redis
        var new = old
        new.redisMode = .sharded
        let diff = ConfigDiff(old: old, new: new, localNode: "a1")
        #expect(Self.lines(diff) == ["[redis] mode: classic -> sharded (needs restart on every node: all nodes must use the same pub/sub mode)"])
        #expect(diff.appliedConfig.redisMode == .classic)
    }

    /// `[cluster] log_level` is live; taking it out hands the level back to `--log-level`.
    @Test func logLevelChangesLive() throws {
        var old = try Self.config()
        old.logLevel = "debug"
        var new = old
        new.logLevel = nil
        let diff = ConfigDiff(old: old, new: new, localNode: "a1")
        #expect(Self.lines(diff) == ["[cluster] log_level: debug -> none (the --log-level flag) (live)"])
        #expect(diff.appliedConfig.logLevel == nil)
    }

    /// A password is never printed, but its change is still reported.
    @Test func redisPasswordChangeIsReportedWithoutThePassword() throws {
        let old = try Self.config(with: "[redis]\nurl = redis://:old-password@cache:6379/0")
        let new = try Self.config(with: "[redis]\nurl = redis://:new-password@cache:6379/0")
        let diff = ConfigDiff(old: old, new: new, localNode: nil)
        #expect(Self.lines(diff) == ["[redis] url: redis://***@cache:6379/0 -> redis://***@cache:6379/0 (another password) (needs restart on every node: all nodes must use the same Redis)"])
        #expect(!diff.description.contains("password@"))
    }

    @Test func drainTimeoutChangesLive() throws {
        let diff = ConfigDiff(old: try Self.config(), new: try Self.config("[cluster]\ndrain_timeout = 3000\n" + Self.base.replacingOccurrences(of: "[cluster]\n", with: "")), localNode: "a1")
        #expect(Self.lines(diff) == ["[cluster] drain_timeout: 10000 -> 3000 (live)"])
    }

    /// Where the secret is read from is only a path; what the file holds is compared as `secret`.
    @Test func secretFileMoveIsLiveAndItsContentIsComparedAsTheSecret() throws {
        var old = try Self.config()
        old.secretFile = "/etc/chatmesh/secret"
        var moved = old
        moved.secretFile = "/etc/chatmesh/secret.d/key"
        #expect(Self.lines(ConfigDiff(old: old, new: moved, localNode: "a1")) == ["[cluster] secret_file: /etc/chatmesh/secret -> /etc/chatmesh/secret.d/key (live)"])

        var rotated = moved
        rotated.secret = "0123456789abcdef0123456789abcdef-second"
        let diff = ConfigDiff(old: old, new: rotated, localNode: "a1")
        #expect(diff.changes.map(\.name) == ["[cluster] secret", "[cluster] secret_file"])
        #expect(diff.appliedConfig.secret == old.secret)
        #expect(diff.appliedConfig.secretFile == rotated.secretFile)
        #expect(ConfigDiff(old: old, new: diff.appliedConfig, localNode: "a1").changes == diff.liveChanges)
    }

    // MARK: needs restart

    @Test func fanoutNeedsEveryNodeRestarted() throws {
        let new = try Self.config(with: "[redis]\nurl = redis://cache:6379")
        var redis = new
        redis.fanout = .redis
        let diff = ConfigDiff(old: new, new: redis, localNode: "a1")
        #expect(Self.lines(diff) == ["[cluster] fanout: mesh -> redis (needs restart on every node: nodes on different fanouts do not hear each other)"])
        #expect(diff.restartChanges.count == 1)
        #expect(diff.appliedConfig.fanout == .mesh)
    }

    /// The secret keeps the old value until every node restarts together, and is never shown.
    @Test func secretChangeNeedsEveryNodeRestartedAndIsNotShown() throws {
        let new = try Self.config(Self.base.replacingOccurrences(of: "-first", with: "-second"))
        let diff = ConfigDiff(old: try Self.config(), new: new, localNode: "a1")
        #expect(Self.lines(diff) == ["[cluster] secret: set -> set (another secret) (needs restart on every node: both ends of a link must hold the same secret; switch all nodes together)"])
        #expect(!diff.description.contains("0123456789abcdef"))
        #expect(diff.restartChanges.first?.restartOn == "every node")
        #expect(diff.appliedConfig.secret == "0123456789abcdef0123456789abcdef-first")
    }

    @Test func secretSetForTheFirstTimeNeedsRestart() throws {
        let old = try Self.config(Self.base.replacingOccurrences(of: "[cluster]\nsecret = 0123456789abcdef0123456789abcdef-first\n", with: ""))
        let diff = ConfigDiff(old: old, new: try Self.config(), localNode: nil)
        #expect(diff.changes.map(\.name) == ["[cluster] secret"])
        #expect(diff.changes.first.map { ($0.oldValue, $0.newValue, $0.classification) } ?? (nil, nil, .live) == ("not set", "set", .needsRestart))
    }

    @Test func meshTLSNeedsEveryNodeRestarted() throws {
        let new = try Self.config(with: """
            [mesh]
            tls = on
            tls_ca = /etc/chatmesh/tls/ca.pem
            tls_cert = /etc/chatmesh/tls/%n.pem
            tls_key = /etc/chatmesh/tls/%n-key.pem
            """)
        let diff = ConfigDiff(old: try Self.config(), new: new, localNode: "a1")
        #expect(Self.lines(diff) == [
            "[mesh] tls: off -> on (needs restart on every node: a TLS node and a plaintext node cannot link)",
            "[mesh] tls_ca: none -> /etc/chatmesh/tls/ca.pem (needs restart on every node)",
            "[mesh] tls_cert: none -> /etc/chatmesh/tls/%n.pem (needs restart on every node)",
            "[mesh] tls_key: none -> /etc/chatmesh/tls/%n-key.pem (needs restart on every node)",
        ])
        #expect(diff.appliedConfig.mesh.tls == nil)
    }

    @Test func channelPrefixNeedsEveryNodeRestarted() throws {
        let diff = ConfigDiff(old: try Self.config(), new: try Self.config(with: "[redis]\nchannel_prefix = chat:"), localNode: "a1")
        #expect(Self.lines(diff) == ["[redis] channel_prefix: \"\" -> \"chat:\" (needs restart on every node: only nodes with the same prefix share rooms)"])
    }

    // MARK: [node NAME]

    static let a1Moved = base
        .replacingOccurrences(of: "listen = 127.0.0.1:8001", with: "listen = 127.0.0.1:9001")
        .replacingOccurrences(of: "mesh = 127.0.0.1:7001", with: "mesh = 127.0.0.1:9101")

    @Test func aNodesOwnAddressesNeedItsRestart() throws {
        let diff = ConfigDiff(old: try Self.config(), new: try Self.config(Self.a1Moved), localNode: "a1")
        #expect(Self.lines(diff) == [
            "[node a1] listen: 127.0.0.1:8001 -> 127.0.0.1:9001 (needs restart on a1)",
            "[node a1] mesh: 127.0.0.1:7001 -> 127.0.0.1:9101 (needs restart on a1)",
        ])
        #expect(diff.appliedConfig.node(named: "a1")?.listen == HostPort(host: "127.0.0.1", port: 8001))
    }

    /// Another node only reads a peer's addresses (to dial it, to relay to it): live for it.
    @Test func anotherNodesAddressesChangeLive() throws {
        let diff = ConfigDiff(old: try Self.config(), new: try Self.config(Self.a1Moved), localNode: "a2")
        #expect(Self.lines(diff) == [
            "[node a1] listen: 127.0.0.1:8001 -> 127.0.0.1:9001 (live)",
            "[node a1] mesh: 127.0.0.1:7001 -> 127.0.0.1:9101 (live)",
        ])
        #expect(diff.appliedConfig.node(named: "a1")?.mesh == HostPort(host: "127.0.0.1", port: 9101))
    }

    /// From the whole cluster's side (no local node), each node's own keys need that node restarted.
    @Test func withoutALocalNodeEveryNodeKeyNeedsThatNodesRestart() throws {
        let new = try Self.config(Self.a1Moved.replacingOccurrences(of: "listen = 127.0.0.1:8003", with: "listen = 127.0.0.1:9003"))
        let diff = ConfigDiff(old: try Self.config(), new: new, localNode: nil)
        #expect(diff.changes.map(\.restartOn) == ["a1", "a1", "a3"])
        #expect(diff.liveChanges.isEmpty)
    }

    @Test func aNodesOwnHTTPSFilesNeedItsRestart() throws {
        let new = try Self.config(Self.base.replacingOccurrences(
            of: "mesh = 127.0.0.1:7002", with: "mesh = 127.0.0.1:7002\ntls_cert = /etc/a2.pem\ntls_key = /etc/a2-key.pem"))
        #expect(Self.lines(ConfigDiff(old: try Self.config(), new: new, localNode: "a2")) == [
            "[node a2] tls_cert: none -> /etc/a2.pem (needs restart on a2)",
            "[node a2] tls_key: none -> /etc/a2-key.pem (needs restart on a2)",
        ])
        #expect(ConfigDiff(old: try Self.config(), new: new, localNode: "a1").restartChanges.isEmpty)
    }

    @Test func addedAndRemovedNodesChangeThePeerSetLive() throws {
        let new = try Self.config(Self.base.replacingOccurrences(
            of: "[node a3]\nlisten = 127.0.0.1:8003\nmesh = 127.0.0.1:7003",
            with: "[node a4]\nlisten = 127.0.0.1:8004\nmesh = 127.0.0.1:7004"))
        let diff = ConfigDiff(old: try Self.config(), new: new, localNode: "a1")
        #expect(Self.lines(diff) == [
            "node a3 removed (live: peers close its links)",
            "node a4 added (live: peers dial it)",
        ])
        #expect(diff.changes.map(\.subject) == [.nodeRemoved, .nodeAdded])
        #expect(diff.appliedConfig.nodes.map(\.name) == ["a1", "a2", "a4"])
    }

    /// A node cannot join or leave by reloading: the added one is started, the removed one stopped.
    @Test func theLocalNodeAddedOrRemovedNeedsItsStartOrStop() throws {
        let withoutA3 = try Self.config(Self.base.replacingOccurrences(of: "[node a3]\nlisten = 127.0.0.1:8003\nmesh = 127.0.0.1:7003", with: ""))
        let removal = ConfigDiff(old: try Self.config(), new: withoutA3, localNode: "a3")
        #expect(Self.lines(removal) == ["node a3 removed (needs restart on a3: it leaves the cluster; stop it)"])
        #expect(removal.appliedConfig.node(named: "a3") != nil, "a running node keeps its own entry until it is stopped")
        let addition = ConfigDiff(old: withoutA3, new: try Self.config(), localNode: "a3")
        #expect(Self.lines(addition) == ["node a3 added (needs restart on a3: it is new; start it)"])
    }

    // MARK: order, coverage, appliedConfig

    /// Section order of ConfigSection.all, then key order, then [node NAME] by name.
    @Test func changesComeInSectionThenKeyOrder() throws {
        let new = try Self.config("""
            [mesh]
            reconnect_max = 3000
            ping_interval = 2000
            [limits]
            say_burst = 5
            [cluster]
            drain_timeout = 1
            secret = 0123456789abcdef0123456789abcdef-first
            [engineio]
            max_payload = 1000
            \(Self.a1Moved.replacingOccurrences(of: "[cluster]\nsecret = 0123456789abcdef0123456789abcdef-first\n", with: ""))
            """)
        let diff = ConfigDiff(old: try Self.config(), new: new, localNode: "a2")
        #expect(diff.changes.map(\.name) == [
            "[cluster] drain_timeout", "[engineio] max_payload", "[limits] say_burst",
            "[mesh] ping_interval", "[mesh] reconnect_max", "[node a1] listen", "[node a1] mesh",
        ])
    }

    /// A key the parser accepts but the diff cannot read would be a change nobody is told about.
    @Test func everyKeyOfEverySectionHasARule() {
        for section in ConfigSection.all {
            for key in section.keys {
                if section.name == "node" {
                    #expect(ConfigDiff.nodeValue(key, of: NodeEntry(name: "x", listen: HostPort(host: "127.0.0.1", port: 1))) != "?", "[node NAME] \(key) has no case in ConfigDiff.nodeValue")
                } else {
                    let rules = ConfigDiff.rules.filter { $0.section == section.name && $0.key == key }
                    #expect(rules.count == 1, "\(section.title) \(key) has \(rules.count) rules in ConfigDiff.rules")
                }
            }
        }
        // Spelled out step by step: as one expression inside #expect it took 2 s to type-check.
        let sectionKeys: [Int] = ConfigSection.all.filter { $0.name != "node" }.map { $0.keys.count }
        let keyCount: Int = sectionKeys.reduce(0, +)
        #expect(ConfigDiff.rules.count == keyCount)
    }

    /// What a reload applies is exactly the live changes; what it keeps is exactly the rest.
    @Test func appliedConfigTakesTheLiveChangesAndKeepsTheRest() throws {
        let new = try Self.config("""
            [cluster]
            secret = 0123456789abcdef0123456789abcdef-second
            drain_timeout = 2000
            [limits]
            text_max = 100
            [mesh]
            tls = on
            tls_ca = ca.pem
            tls_cert = %n.pem
            tls_key = %n-key.pem
            buffer_ms = 100
            [recovery]
            enabled = on
            \(Self.a1Moved.replacingOccurrences(of: "[cluster]\nsecret = 0123456789abcdef0123456789abcdef-first\n", with: ""))
            [node a9]
            listen = 127.0.0.1:8009
            mesh = 127.0.0.1:7009
            """)
        let old = try Self.config()
        for local in ["a1", "a2"] {
            let diff = ConfigDiff(old: old, new: new, localNode: local)
            #expect(!diff.liveChanges.isEmpty && !diff.restartChanges.isEmpty)
            #expect(ConfigDiff(old: old, new: diff.appliedConfig, localNode: local).changes == diff.liveChanges, "local \(local)")
            #expect(ConfigDiff(old: diff.appliedConfig, new: new, localNode: local).changes.map(\.name) == diff.restartChanges.map(\.name), "local \(local)")
        }
    }

    /// docs/CONFIG.md "What a reload changes" lists every key once, classified as the code does.
    @Test func reloadTableInConfigReferenceMatchesTheRules() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let text = try String(contentsOf: root.appendingPathComponent("docs/CONFIG.md"), encoding: .utf8)
        let section = try #require(text.components(separatedBy: "\n## What a reload changes\n").dropFirst().first)
            .components(separatedBy: "\n## ").first ?? ""
        var documented: [String: String] = [:]  // "[limits] say_rate" → "live" / "needs restart, every node" / …
        for row in section.split(separator: "\n") where row.hasPrefix("| `[") {
            let cells = row.split(separator: "|").map { $0.trimmingCharacters(in: .whitespaces) }
            try #require(cells.count == 3, "row \(row)")
            let spans = cells[0].split(separator: "`", omittingEmptySubsequences: false).enumerated()
                .filter { $0.offset % 2 == 1 }.map { String($0.element) }
            let header = spans[0] == "[node NAME]" ? "[node]" : spans[0]
            for key in spans.dropFirst() {
                #expect(documented.updateValue(cells[1], forKey: "\(header) \(key)") == nil, "\(header) \(key) is listed twice")
            }
        }
        for configSection in ConfigSection.all {
            for key in configSection.keys {
                let effect = documented.removeValue(forKey: "[\(configSection.name)] \(key)")
                let expected: String
                if configSection.name == "node" {
                    expected = "needs restart on that node; live on the others"
                } else if let rule = ConfigDiff.rules.first(where: { $0.section == configSection.name && $0.key == key }) {
                    if case .live = rule.effect { expected = "live" } else { expected = "needs restart, every node" }
                } else {
                    continue  // everyKeyOfEverySectionHasARule names it
                }
                #expect(effect == expected, "docs/CONFIG.md says \(configSection.title) \(key) is \(effect ?? "not listed"), the code: \(expected)")
            }
        }
        #expect(documented.isEmpty, "docs/CONFIG.md lists keys the parser does not accept: \(documented.keys.sorted())")
    }

    // MARK: through files

    /// Writes `text` to a fresh temporary file and returns its path.
    static func temporaryFile(_ text: String) throws -> String {
        var template = Array("/tmp/configdiff-test-XXXXXX".utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        try #require(fd >= 0)
        defer { close(fd) }
        let bytes = Array(text.utf8)
        let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        try #require(written == bytes.count)
        return template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }

    @Test func diffOfTwoFilesOnDisk() throws {
        let oldPath = try Self.temporaryFile(Self.base)
        defer { unlink(oldPath) }
        let newPath = try Self.temporaryFile("[limits]\nsay_rate = 50\n" + Self.base + """
            [node a4]
            listen = 127.0.0.1:8004
            mesh = 127.0.0.1:7004
            """)
        defer { unlink(newPath) }
        let diff = ConfigDiff(old: try ClusterConfig.load(path: oldPath), new: try ClusterConfig.load(path: newPath), localNode: nil)
        #expect(diff.description == """
            [limits] say_rate: 20 -> 50 (live)
            node a4 added (live: peers dial it)
            """)
    }
}
