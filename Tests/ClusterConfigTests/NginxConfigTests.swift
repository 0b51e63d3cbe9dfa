import Foundation
import Testing
@testable import ClusterConfig

/// `chatmesh nginx-conf`'s text: the upstream's balance follows the fanout (docs/RELAY.md).
@Suite("NginxConfig")
struct NginxConfigTests {
    static let meshConf = """
        [node a1]
        listen = 127.0.0.1:6001
        mesh = 127.0.0.1:7001
        [node a2]
        listen = 127.0.0.1:6002
        mesh = 127.0.0.1:7002
        """
    static let redisConf = """
        [cluster]
        fanout = redis
        [redis]
        url = redis://127.0.0.1:6379
        [node a1]
        listen = 127.0.0.1:6001
        [node a2]
        listen = 127.0.0.1:6002
        """

    static func text(_ conf: String, balance: NginxConfig.Balance? = nil) throws -> String {
        let config = try ClusterConfig.parse(conf, file: "cluster.conf")
        return NginxConfig(config: config, nodes: config.nodes, listen: "80", serverName: "_", balance: balance).text
    }

    /// The lines of the `upstream chatmesh { ... }` block, trimmed.
    static func upstream(_ text: String) throws -> [String] {
        let lines = text.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
        let start = try #require(lines.firstIndex(of: "upstream chatmesh {"))
        let end = try #require(lines[start...].firstIndex(of: "}"))
        return Array(lines[(start + 1)..<end])
    }

    /// The header comment, before the upstream.
    static func comment(_ text: String) -> String {
        text.components(separatedBy: "upstream chatmesh {").first ?? ""
    }

    @Test func meshDefaultsToRoundRobin() throws {
        #expect(NginxConfig.Balance.standard(for: .mesh) == .roundRobin)
        let text = try Self.text(Self.meshConf)
        let upstream = try Self.upstream(text)
        #expect(upstream == [
            "server 127.0.0.1:6001 max_fails=1 fail_timeout=5s;  # node a1",
            "server 127.0.0.1:6002 max_fails=1 fail_timeout=5s;  # node a2",
        ])
        #expect(!text.contains("ip_hash;"))
        #expect(Self.comment(text).contains("Round-robin"))
        #expect(Self.comment(text).contains("relays"))
    }

    @Test func meshWithIPHashPinsClientsAndSaysWhy() throws {
        let text = try Self.text(Self.meshConf, balance: .ipHash)
        #expect(try Self.upstream(text).first == "ip_hash;")
        #expect(try Self.upstream(text).count == 3)
        #expect(Self.comment(text).contains("ip_hash keeps a client on one node"))
    }

    @Test func redisDefaultsToIPHashBecauseItDoesNotRelay() throws {
        #expect(NginxConfig.Balance.standard(for: .redis) == .ipHash)
        let text = try Self.text(Self.redisConf)
        #expect(try Self.upstream(text).first == "ip_hash;")
        #expect(Self.comment(text).contains("fanout = redis"))
        #expect(Self.comment(text).contains("does not relay"))
    }

    @Test func roundRobinIsRefusedOnlyForRedis() throws {
        let refusal = try #require(NginxConfig.Balance.roundRobin.refusal(for: .redis))
        #expect(refusal.contains("--balance round-robin needs fanout = mesh"))
        #expect(refusal.contains("--balance ip_hash"))
        #expect(NginxConfig.Balance.ipHash.refusal(for: .redis) == nil)
        #expect(NginxConfig.Balance.roundRobin.refusal(for: .mesh) == nil)
        #expect(NginxConfig.Balance.ipHash.refusal(for: .mesh) == nil)
    }

    @Test func balanceIsSpelledAsTheFlagTakesIt() {
        #expect(NginxConfig.Balance(rawValue: "round-robin") == .roundRobin)
        #expect(NginxConfig.Balance(rawValue: "ip_hash") == .ipHash)
        #expect(NginxConfig.Balance(rawValue: "ip-hash") == nil)
        #expect(NginxConfig.Balance.allCases.map(\.rawValue) == ["round-robin", "ip_hash"])
    }

    @Test func everyBalanceKeepsTheProxySettings() throws {
        for (conf, balance) in [(Self.meshConf, NginxConfig.Balance.roundRobin), (Self.meshConf, .ipHash), (Self.redisConf, .ipHash)] {
            let text = try Self.text(conf, balance: balance)
            #expect(text.contains("proxy_pass http://chatmesh;"))
            #expect(text.contains("proxy_set_header Upgrade $http_upgrade;"))
            #expect(text.contains("proxy_buffering off;"))
            #expect(text.contains("listen 80;"))
            // Every comment line starts with '#': the balance text cannot break nginx's syntax.
            for line in Self.comment(text).split(separator: "\n") {
                #expect(line.hasPrefix("#"), "\(line)")
            }
        }
    }
}
