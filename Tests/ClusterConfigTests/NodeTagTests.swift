import Testing
@testable import ClusterConfig

/// The tag that names a node in its Engine.IO sids, and config load's refusal of two nodes
/// that would share one.
@Suite("NodeTag")
struct NodeTagTests {
    @Test func fnv1a64MatchesThePublishedTestVectors() {
        // From the FNV reference test suite (Fowler, Noll, Vo).
        #expect(NodeTag.fnv1a64("") == 0xcbf2_9ce4_8422_2325)
        #expect(NodeTag.fnv1a64("a") == 0xaf63_dc4c_8601_ec8c)
        #expect(NodeTag.fnv1a64("foobar") == 0x8594_4171_f739_67e8)
    }

    @Test func foldingKeepsTwentyFourBitsAndEveryPartOfTheHashCounts() {
        #expect(NodeTag.bits(0x0000_0000_00AB_CDEF) == 0xAB_CDEF)
        #expect(NodeTag.bits(1 << 24) == 1)
        #expect(NodeTag.bits(1 << 48) == 1)
        #expect(NodeTag.bits(0xFFFF_FFFF_FFFF_FFFF) == 0xFFFF)  // the two low folds cancel; the top one has 16 bits
        #expect(NodeTag.bits(.max) <= 0xFF_FFFF)
    }

    @Test func twentyFourBitsAreFourBase64URLCharacters() {
        #expect(NodeTag.text(of: 0) == "AAAA")
        #expect(NodeTag.text(of: 0xFF_FFFF) == "____")
        #expect(NodeTag.text(of: 0xFB_EFBE) == "----")  // 62 four times
        #expect(NodeTag.text(of: 0x00_0001) == "AAAB")
        #expect(NodeTag.text(of: 0x04_1041) == "BBBB")
    }

    @Test func tagIsTheFoldedHashOfTheName() {
        for name in ["a1", "a2", "node-17", "x"] {
            let tag = NodeTag.of(nodeName: name)
            #expect(tag == NodeTag.text(of: NodeTag.bits(NodeTag.fnv1a64(name))))
            #expect(tag.utf8.count == NodeTag.length)
            #expect(tag == NodeTag.of(nodeName: name), "the same on every call")
        }
        #expect(NodeTag.of(nodeName: "a1") != NodeTag.of(nodeName: "a2"))
        #expect(NodeTag.of(nodeName: "a2") != NodeTag.of(nodeName: "a3"))
    }

    /// Two valid node names with one tag, found by brute force (24 bits: a few thousand names).
    static func collidingNames() -> (String, String) {
        var seen: [String: String] = [:]
        for i in 0... {
            let name = "n\(i)"
            let tag = NodeTag.of(nodeName: name)
            if let first = seen[tag] { return (first, name) }
            seen[tag] = name
        }
        fatalError("unreachable")
    }

    @Test func configWithTwoNodesSharingATagIsRefusedAtTheSecondHeader() throws {
        let (first, second) = Self.collidingNames()
        #expect(first != second)
        #expect(NodeTag.of(nodeName: first) == NodeTag.of(nodeName: second))
        let text = """
            [cluster]
            fanout = mesh
            [node \(first)]
            listen = 127.0.0.1:6001
            mesh = 127.0.0.1:7001
            [node \(second)]
            listen = 127.0.0.1:6002
            mesh = 127.0.0.1:7002
            """
        let error = try #require(configError(text))
        #expect(error.line == 6)
        #expect(error.description == "cluster.conf:6: nodes '\(first)' (line 3) and '\(second)' have the same session id tag '\(NodeTag.of(nodeName: first))' (a hash of the name); rename one of them")
    }

    @Test func nodesWithDistinctTagsLoad() throws {
        let text = """
            [node a1]
            listen = 127.0.0.1:6001
            mesh = 127.0.0.1:7001
            [node a2]
            listen = 127.0.0.1:6002
            mesh = 127.0.0.1:7002
            """
        let config = try ClusterConfig.parse(text, file: "cluster.conf")
        #expect(config.nodes.map(\.name) == ["a1", "a2"])
    }
}
