/// Real replies of a real Redis Cluster: 6 redis-server 7.0.15 processes on loopback
/// (`--cluster-enabled yes`, 3 primaries and 3 replicas), captured byte for byte from a socket
/// with a raw `CLUSTER SLOTS` and the commands named beside each. One string per RESP line
/// (the CRLFs are added by `bytes`), so the shape of the reply stays readable.
enum RedisClusterFixtures {
    /// Just after `redis-cli --cluster create` of 127.0.0.1:7301-7306 with `--cluster-replicas 1`:
    /// 7301, 7302, 7303 primaries of 0-5460, 5461-10922, 10923-16383; 7304, 7305, 7306 their replicas.
    static let threePrimaries: [String] = [
        "*3", "*4", ":0", ":5460", "*4", "$9", "127.0.0.1", ":7301", "$40",
        "df98c7bdc60b93b2713cff4c420b8876b9568ecd", "*0", "*4", "$9", "127.0.0.1", ":7304", "$40",
        "f5f12d3e5ba97f0bd451a328af7571628fc3a0dd", "*0", "*4", ":5461", ":10922", "*4", "$9", "127.0.0.1", ":7302",
        "$40", "6354562974a600a2a8d7b2719319f5d709fd7f69", "*0", "*4", "$9", "127.0.0.1", ":7305", "$40",
        "4c70bca04751cc00585a6450cfc0f9ef7fc0e6cd", "*0", "*4", ":10923", ":16383", "*4", "$9", "127.0.0.1", ":7303",
        "$40", "968fb87d427a66ecce65be4205b778b30a4059ff", "*0", "*4", "$9", "127.0.0.1", ":7306", "$40",
        "7fa471024cb076738ba03eb8e35c2e20b644d57b", "*0",
    ]

    /// After `redis-cli --cluster reshard` moved slots 0-99 from 7301 to 7302 and slot 10923
    /// from 7303 to 7301: 7302 serves 0-99 and 5461-10922, 7301 serves 100-5460 and 10923.
    static let resharded: [String] = [
        "*5", "*4", ":0", ":99", "*4", "$9", "127.0.0.1", ":7302", "$40", "6354562974a600a2a8d7b2719319f5d709fd7f69",
        "*0", "*4", "$9", "127.0.0.1", ":7305", "$40", "4c70bca04751cc00585a6450cfc0f9ef7fc0e6cd", "*0", "*4", ":100",
        ":5460", "*4", "$9", "127.0.0.1", ":7301", "$40", "df98c7bdc60b93b2713cff4c420b8876b9568ecd", "*0", "*4",
        "$9", "127.0.0.1", ":7304", "$40", "f5f12d3e5ba97f0bd451a328af7571628fc3a0dd", "*0", "*4", ":5461", ":10922",
        "*4", "$9", "127.0.0.1", ":7302", "$40", "6354562974a600a2a8d7b2719319f5d709fd7f69", "*0", "*4", "$9",
        "127.0.0.1", ":7305", "$40", "4c70bca04751cc00585a6450cfc0f9ef7fc0e6cd", "*0", "*4", ":10923", ":10923", "*4",
        "$9", "127.0.0.1", ":7301", "$40", "df98c7bdc60b93b2713cff4c420b8876b9568ecd", "*0", "*4", "$9", "127.0.0.1",
        ":7304", "$40", "f5f12d3e5ba97f0bd451a328af7571628fc3a0dd", "*0", "*4", ":10924", ":16383", "*4", "$9",
        "127.0.0.1", ":7303", "$40", "968fb87d427a66ecce65be4205b778b30a4059ff", "*0", "*4", "$9", "127.0.0.1",
        ":7306", "$40", "7fa471024cb076738ba03eb8e35c2e20b644d57b", "*0",
    ]

    /// After that, `kill -9` of 7303 (primary of 10924-16383): its replica 7306 was promoted in
    /// about 4 s (cluster-node-timeout 2000) and 7303 is no longer named. (When 7306 was killed too,
    /// with the cluster down, CLUSTER SLOTS still answered these very bytes, the dead 7306 included.)
    static let failedOver: [String] = [
        "*5", "*4", ":0", ":99", "*4", "$9", "127.0.0.1", ":7302", "$40", "6354562974a600a2a8d7b2719319f5d709fd7f69",
        "*0", "*4", "$9", "127.0.0.1", ":7305", "$40", "4c70bca04751cc00585a6450cfc0f9ef7fc0e6cd", "*0", "*4", ":100",
        ":5460", "*4", "$9", "127.0.0.1", ":7301", "$40", "df98c7bdc60b93b2713cff4c420b8876b9568ecd", "*0", "*4",
        "$9", "127.0.0.1", ":7304", "$40", "f5f12d3e5ba97f0bd451a328af7571628fc3a0dd", "*0", "*4", ":5461", ":10922",
        "*4", "$9", "127.0.0.1", ":7302", "$40", "6354562974a600a2a8d7b2719319f5d709fd7f69", "*0", "*4", "$9",
        "127.0.0.1", ":7305", "$40", "4c70bca04751cc00585a6450cfc0f9ef7fc0e6cd", "*0", "*4", ":10923", ":10923", "*4",
        "$9", "127.0.0.1", ":7301", "$40", "df98c7bdc60b93b2713cff4c420b8876b9568ecd", "*0", "*4", "$9", "127.0.0.1",
        ":7304", "$40", "f5f12d3e5ba97f0bd451a328af7571628fc3a0dd", "*0", "*3", ":10924", ":16383", "*4", "$9",
        "127.0.0.1", ":7306", "$40", "7fa471024cb076738ba03eb8e35c2e20b644d57b", "*0",
    ]

    /// The first cluster with `cluster-preferred-endpoint-type unknown-endpoint` on 7301: every
    /// endpoint is a null bulk string ("use the address you asked"); the metadata names the ip.
    static let unknownEndpoint: [String] = [
        "*3", "*4", ":0", ":5460", "*4", "$-1", ":7301", "$40", "df98c7bdc60b93b2713cff4c420b8876b9568ecd", "*2",
        "$2", "ip", "$9", "127.0.0.1", "*4", "$-1", ":7304", "$40", "f5f12d3e5ba97f0bd451a328af7571628fc3a0dd", "*2",
        "$2", "ip", "$9", "127.0.0.1", "*4", ":5461", ":10922", "*4", "$-1", ":7302", "$40",
        "6354562974a600a2a8d7b2719319f5d709fd7f69", "*2", "$2", "ip", "$9", "127.0.0.1", "*4", "$-1", ":7305", "$40",
        "4c70bca04751cc00585a6450cfc0f9ef7fc0e6cd", "*2", "$2", "ip", "$9", "127.0.0.1", "*4", ":10923", ":16383",
        "*4", "$-1", ":7303", "$40", "968fb87d427a66ecce65be4205b778b30a4059ff", "*2", "$2", "ip", "$9", "127.0.0.1",
        "*4", "$-1", ":7306", "$40", "7fa471024cb076738ba03eb8e35c2e20b644d57b", "*2", "$2", "ip", "$9", "127.0.0.1",
    ]

    /// With `cluster-preferred-endpoint-type hostname` but no hostname announced: every endpoint
    /// is "?"; the metadata names the ip.
    static let hostnameMissing: [String] = [
        "*3", "*4", ":0", ":5460", "*4", "$1", "?", ":7301", "$40", "df98c7bdc60b93b2713cff4c420b8876b9568ecd", "*2",
        "$2", "ip", "$9", "127.0.0.1", "*4", "$1", "?", ":7304", "$40", "f5f12d3e5ba97f0bd451a328af7571628fc3a0dd",
        "*2", "$2", "ip", "$9", "127.0.0.1", "*4", ":5461", ":10922", "*4", "$1", "?", ":7302", "$40",
        "6354562974a600a2a8d7b2719319f5d709fd7f69", "*2", "$2", "ip", "$9", "127.0.0.1", "*4", "$1", "?", ":7305",
        "$40", "4c70bca04751cc00585a6450cfc0f9ef7fc0e6cd", "*2", "$2", "ip", "$9", "127.0.0.1", "*4", ":10923",
        ":16383", "*4", "$1", "?", ":7303", "$40", "968fb87d427a66ecce65be4205b778b30a4059ff", "*2", "$2", "ip", "$9",
        "127.0.0.1", "*4", "$1", "?", ":7306", "$40", "7fa471024cb076738ba03eb8e35c2e20b644d57b", "*2", "$2", "ip",
        "$9", "127.0.0.1",
    ]

    /// With `cluster-preferred-endpoint-type hostname` and `cluster-announce-hostname
    /// node-<port>.localhost` on every node: endpoints are host names, the metadata names the ip.
    static let hostnames: [String] = [
        "*3", "*4", ":0", ":5460", "*4", "$19", "node-7301.localhost", ":7301", "$40",
        "df98c7bdc60b93b2713cff4c420b8876b9568ecd", "*2", "$2", "ip", "$9", "127.0.0.1", "*4", "$19",
        "node-7304.localhost", ":7304", "$40", "f5f12d3e5ba97f0bd451a328af7571628fc3a0dd", "*2", "$2", "ip", "$9",
        "127.0.0.1", "*4", ":5461", ":10922", "*4", "$19", "node-7302.localhost", ":7302", "$40",
        "6354562974a600a2a8d7b2719319f5d709fd7f69", "*2", "$2", "ip", "$9", "127.0.0.1", "*4", "$19",
        "node-7305.localhost", ":7305", "$40", "4c70bca04751cc00585a6450cfc0f9ef7fc0e6cd", "*2", "$2", "ip", "$9",
        "127.0.0.1", "*4", ":10923", ":16383", "*4", "$19", "node-7303.localhost", ":7303", "$40",
        "968fb87d427a66ecce65be4205b778b30a4059ff", "*2", "$2", "ip", "$9", "127.0.0.1", "*4", "$19",
        "node-7306.localhost", ":7306", "$40", "7fa471024cb076738ba03eb8e35c2e20b644d57b", "*2", "$2", "ip", "$9",
        "127.0.0.1",
    ]

    /// The reply's bytes: every line followed by CRLF.
    static func bytes(_ lines: [String]) -> [UInt8] {
        Array(lines.map { $0 + "\r\n" }.joined().utf8)
    }

    /// Error replies (text after the '-') of the same cluster and of a plain redis-server.
    static let movedFromWrongPrimary = "MOVED 12182 127.0.0.1:7303"          // SPUBLISH foo on 7302
    static let movedUnknownEndpoint = "MOVED 12182 :7303"                    // unknown-endpoint
    static let movedHostnameMissing = "MOVED 12182 ?:7303"                   // hostname, none announced
    static let movedHostname = "MOVED 12182 node-7303.localhost:7303"        // hostname announced
    static let askWhileMigrating = "ASK 12182 127.0.0.1:7301"                // GET foo, slot migrating
    static let clusterDown = "CLUSTERDOWN The cluster is down"               // a shard without primary
    static let clusterDisabled = "ERR This instance has cluster support disabled"  // CLUSTER SLOTS, plain server
}
