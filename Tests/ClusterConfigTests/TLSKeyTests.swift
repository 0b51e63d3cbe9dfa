import NIOCore
import Testing
@testable import ClusterConfig

/// The TLS keys of [mesh], [node NAME] and [redis]: what they set, and every refused
/// combination at the line that causes it.
@Suite struct TLSKeyTests {
    static let meshTLS = """
        [mesh]
        tls = on
        tls_ca = /etc/chatmesh/tls/ca.pem
        tls_cert = /etc/chatmesh/tls/%n.pem
        tls_key = /etc/chatmesh/tls/%n-key.pem

        """

    @Test func meshTLSOnSetsItsFilesAndExpandsTheNodeName() throws {
        let config = try ClusterConfig.parse(Self.meshTLS + oneNode, file: "c.conf")
        let tls = try #require(config.mesh.tls)
        #expect(tls.caFile == "/etc/chatmesh/tls/ca.pem")
        #expect(tls.line == 2 && tls.caLine == 3 && tls.certLine == 4 && tls.keyLine == 5)
        #expect(tls.certFile(for: "a1") == "/etc/chatmesh/tls/a1.pem")
        #expect(tls.keyFile(for: "b-2") == "/etc/chatmesh/tls/b-2-key.pem")
        #expect(MeshTLSSettings(caFile: "c", certFile: "%n/%n.pem", keyFile: "k", line: 1).certFile(for: "x") == "x/x.pem")
    }

    @Test func meshTLSIsOffByDefaultAndWhenSaidSo() throws {
        #expect(try ClusterConfig.parse(oneNode, file: "c.conf").mesh.tls == nil)
        #expect(try ClusterConfig.parse("[mesh]\ntls = off\n" + oneNode, file: "c.conf").mesh.tls == nil)
    }

    @Test func meshTLSOnWithoutItsFilesNamesWhatIsMissing() {
        let text = "[mesh]\ntls = on\ntls_ca = ca.pem\n" + oneNode
        #expect(configError(text)?.description == "cluster.conf:2: tls = on in [mesh] needs tls_ca, tls_cert and tls_key; missing: tls_cert, tls_key (`chatmesh gen-certs` makes the files and prints the lines)")
    }

    @Test func meshTLSFilesWithoutTLSOnAreRefusedAtTheirLine() {
        #expect(configError("[mesh]\nping_interval = 500\ntls_cert = a.pem\n" + oneNode)?.description
            == "cluster.conf:3: 'tls_cert' in [mesh] is set, but tls is off (the default); add 'tls = on' to [mesh] or remove it")
        #expect(configError("[mesh]\ntls_key = k.pem\ntls = off\n" + oneNode)?.description
            == "cluster.conf:2: 'tls_key' in [mesh] is set, but tls = off (line 3); add 'tls = on' to [mesh] or remove it")
    }

    @Test(arguments: ["yes", "true", "ON", "1"])
    func meshTLSIsOnOrOff(value: String) {
        #expect(configError("[mesh]\ntls = \(value)\n" + oneNode)?.description == "cluster.conf:2: 'tls' in [mesh] must be on or off, got '\(value)'")
    }

    @Test func emptyTLSPathsAreRefused() {
        #expect(configError("[mesh]\ntls_ca =\n" + oneNode)?.description == "cluster.conf:2: empty value for 'tls_ca' in [mesh]; expected the path of a PEM file")
        #expect(configError("[mesh]\ntls =\n" + oneNode)?.description == "cluster.conf:2: empty value for 'tls' in [mesh]; expected on or off")
    }

    @Test func nodeClientTLSTakesCertAndKeyTogether() throws {
        let good = "[node a1]\nlisten = 127.0.0.1:6443\ntls_cert = /tls/a1.pem\ntls_key = /tls/a1-key.pem\n[node a2]\nlisten = 127.0.0.1:6002\n"
        let config = try ClusterConfig.parse("[cluster]\nfanout = redis\n[redis]\nurl = redis://h\n" + good, file: "c.conf")
        #expect(config.nodes[0].clientTLS == ClientTLSSettings(certFile: "/tls/a1.pem", keyFile: "/tls/a1-key.pem", line: 7, certLine: 7, keyLine: 8))
        #expect(config.nodes[1].clientTLS == nil)
        #expect(configError("[node a1]\nlisten = 127.0.0.1:6443\ntls_cert = /tls/a1.pem\n")?.description
            == "cluster.conf:3: 'tls_cert' in [node a1] needs 'tls_key' (the certificate's private key) too: HTTPS on listen takes both or neither")
        #expect(configError("[node a1]\ntls_key = /tls/a1-key.pem\nlisten = 127.0.0.1:6443\n")?.description
            == "cluster.conf:2: 'tls_key' in [node a1] needs 'tls_cert' (its certificate) too: HTTPS on listen takes both or neither")
    }

    @Test func redissURLsSetTLSWithOrWithoutFiles() throws {
        let bare = try ClusterConfig.parse("[cluster]\nfanout = redis\n[redis]\nurl = rediss://:pw@cache:6380\n" + oneNode, file: "c.conf")
        #expect(bare.redisURL?.tls == true)
        #expect(bare.redisURL?.description == "rediss://***@cache:6380/0")
        #expect(bare.redisTLS == RedisTLSSettings(line: 4))
        let full = try ClusterConfig.parse("[redis]\nurl = rediss://cache\ntls_ca = /r/ca.pem\ntls_cert = /r/c.pem\ntls_key = /r/k.pem\n" + oneNode, file: "c.conf")
        #expect(full.redisTLS == RedisTLSSettings(caFile: "/r/ca.pem", certFile: "/r/c.pem", keyFile: "/r/k.pem", line: 2, caLine: 3, certLine: 4, keyLine: 5))
        let plain = try ClusterConfig.parse("[redis]\nurl = redis://cache\n" + oneNode, file: "c.conf")
        #expect(plain.redisURL?.tls == false && plain.redisTLS == nil)
    }

    @Test func redisTLSFilesNeedARedissURLAndComeInPairs() {
        #expect(configError("[redis]\nurl = redis://cache\ntls_ca = /r/ca.pem\n" + oneNode)?.description
            == "cluster.conf:3: 'tls_ca' in [redis] is only for TLS, but the url at line 2 is redis://; use a rediss:// url or remove it")
        #expect(configError("[redis]\ntls_key = /r/k.pem\n" + oneNode)?.description
            == "cluster.conf:2: 'tls_key' in [redis] is only for TLS, but [redis] has no url; use a rediss:// url or remove it")
        #expect(configError("[redis]\nurl = rediss://cache\ntls_cert = /r/c.pem\n" + oneNode)?.description
            == "cluster.conf:3: 'tls_cert' in [redis] needs 'tls_key' (the client certificate's private key) too: both or neither")
        #expect(configError("[redis]\ntls_key = /r/k.pem\nurl = rediss://cache\n" + oneNode)?.description
            == "cluster.conf:2: 'tls_key' in [redis] needs 'tls_cert' (its client certificate) too: both or neither")
    }

    @Test func connectionLimitsHaveDefaultsAndTakeValues() throws {
        let defaults = try ClusterConfig.parse(oneNode, file: "c.conf").limits
        #expect(defaults.headerTimeout == .milliseconds(10_000) && defaults.maxSockets == 0 && defaults.fdReserve == 256)
        let set = try ClusterConfig.parse("[limits]\nheader_timeout = 2500\nmax_sockets = 900\nfd_reserve = 64\n" + oneNode, file: "c.conf").limits
        #expect(set.headerTimeout == .milliseconds(2500) && set.maxSockets == 900 && set.fdReserve == 64)
        #expect(try ClusterConfig.parse("[limits]\nmax_sockets = 0\n" + oneNode, file: "c.conf").limits.maxSockets == 0)
    }

    @Test func connectionLimitsRefuseBadValues() {
        #expect(configError("[limits]\nheader_timeout = 0\n" + oneNode)?.description == "cluster.conf:2: 'header_timeout' in [limits] must be a positive integer (milliseconds), got 0")
        #expect(configError("[limits]\nheader_timeout = 10s\n" + oneNode)?.description == "cluster.conf:2: 'header_timeout' in [limits] must be a plain integer in milliseconds without a unit suffix, got '10s'")
        #expect(configError("[limits]\nfd_reserve = 0\n" + oneNode)?.description == "cluster.conf:2: 'fd_reserve' in [limits] must be a positive integer (descriptors), got 0")
        #expect(configError("[limits]\nmax_sockets = -1\n" + oneNode)?.description == "cluster.conf:2: 'max_sockets' in [limits] must be a whole number (sockets), got '-1'")
    }

    @Test func summaryShowsTheNewSettingsAndKeepsTheOldLines() throws {
        let text = "[cluster]\nfanout = redis\n[redis]\nurl = rediss://cache\ntls_ca = /r/ca.pem\n" + Self.meshTLS
            + "[limits]\nmax_sockets = 500\n[node a1]\nlisten = 127.0.0.1:6001\ntls_cert = /t/a1.pem\ntls_key = /t/a1-key.pem\n"
        let lines = try ClusterConfig.parse(text, file: "c.conf").summary().split(separator: "\n").map(String.init)
        #expect(lines.contains("redis: rediss://cache:6379/0"))
        #expect(lines.contains("redis tls: ca /r/ca.pem, no client certificate"))
        #expect(lines.contains("  a1  listen 127.0.0.1:6001"))
        #expect(lines.contains("      https: tls_cert /t/a1.pem, tls_key /t/a1-key.pem"))
        #expect(lines.contains("  header_timeout = 10000 ms"))
        #expect(lines.contains("  max_sockets = 500"))
        #expect(lines.contains("  fd_reserve = 256"))
        // The mesh block ends with its TLS lines; [recovery]'s block follows it.
        let meshEnd = try #require(lines.firstIndex(of: "recovery:"))
        #expect(lines[..<meshEnd].suffix(4) == ["  tls = on", "  tls_ca = /etc/chatmesh/tls/ca.pem", "  tls_cert = /etc/chatmesh/tls/%n.pem", "  tls_key = /etc/chatmesh/tls/%n-key.pem"])
        let plain = try ClusterConfig.parse(oneNode, file: "c.conf").summary().split(separator: "\n").map(String.init)
        #expect(plain.firstIndex(of: "recovery:").map { plain[$0 - 1] } == "  tls = off")
        #expect(plain.contains("  max_sockets = 0 (automatic: descriptor limit - fd_reserve)"))
    }
}
