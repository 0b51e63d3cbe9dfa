import Testing
@testable import ClusterConfig

@Test func unknownSectionNamesFileAndLine() {
    let error = configError(oneNode + "[server]\n", file: "bad.conf")
    #expect(error?.file == "bad.conf")
    #expect(error?.line == 3)
    #expect(error?.description == "bad.conf:3: unknown section [server]; valid sections: [cluster], [redis], [engineio], [limits], [mesh], [recovery], [node NAME]")
}

@Test func unknownSectionSuggestsTheCorrectSpelling() {
    let error = configError("[Cluster]\n" + oneNode)
    #expect(error?.description.hasPrefix("cluster.conf:1: unknown section [Cluster]") == true)
    #expect(error?.message.hasSuffix("did you mean [cluster]?") == true)
}

@Test func unknownKeyNamesFileAndLine() {
    let error = configError("[engineio]\nping_interval = 1\nping = 5\n" + oneNode, file: "x.conf")
    #expect(error?.description == "x.conf:3: unknown key 'ping' in [engineio]; valid keys: ping_interval, ping_timeout, max_payload, upgrade_timeout, connect_timeout, allowed_origins")
}

@Test func unknownKeyInNodeSectionNamesTheNode() {
    let error = configError("[node a1]\nlisten = 127.0.0.1:6001\nport = 6001\n")
    #expect(error?.description == "cluster.conf:3: unknown key 'port' in [node a1]; valid keys: listen, mesh, tls_cert, tls_key")
}

@Test func unknownKeySuggestsSpellingAndHomeSection() {
    let hyphen = configError("[limits]\nsay-rate = 5\n" + oneNode)
    #expect(hyphen?.description.hasPrefix("cluster.conf:2: unknown key 'say-rate' in [limits]") == true)
    #expect(hyphen?.message.hasSuffix("did you mean 'say_rate'?") == true)
    let misplaced = configError("[redis]\nsecret = x\n" + oneNode)
    #expect(misplaced?.description.hasPrefix("cluster.conf:2: unknown key 'secret' in [redis]; valid keys: url, channel_prefix") == true)
    #expect(misplaced?.message.hasSuffix("('secret' belongs in [cluster])") == true)
}

@Test func lineThatIsNeitherHeaderNorKeyValueIsRejected() {
    let error = configError(oneNode + "[cluster]\nfanout mesh\n")
    #expect(error?.description == "cluster.conf:4: expected 'key = value' or a [section] header, got 'fanout mesh'")
}

@Test func missingKeyNameIsRejected() {
    let error = configError("[cluster]\n= mesh\n" + oneNode)
    #expect(error?.description == "cluster.conf:2: missing key name before '=' in '= mesh'")
}

@Test func keyBeforeAnySectionIsRejected() {
    let error = configError("# header comment\nfanout = mesh\n" + oneNode)
    #expect(error?.description == "cluster.conf:2: 'fanout' is set before any [section] header; put it under [cluster]")
    let listen = configError("listen = 127.0.0.1:6001\n" + oneNode)
    #expect(listen?.description == "cluster.conf:1: 'listen' is set before any [section] header; put it under [node NAME]")
}

@Test func duplicateKeyPointsAtSecondOccurrence() {
    let error = configError("[cluster]\nfanout = mesh\n\nfanout = redis\n" + oneNode)
    #expect(error?.description == "cluster.conf:4: duplicate key 'fanout' in [cluster] (first set at line 2)")
    let inNode = configError("[node a1]\nlisten = 127.0.0.1:6001\nlisten = 127.0.0.1:6002\n")
    #expect(inNode?.description == "cluster.conf:3: duplicate key 'listen' in [node a1] (first set at line 2)")
}

@Test func sameKeyInDifferentNodesIsNotADuplicate() throws {
    let config = try ClusterConfig.parse("[node a]\nlisten = 127.0.0.1:1\nmesh = 127.0.0.1:3\n[node b]\nlisten = 127.0.0.1:2\nmesh = 127.0.0.1:4\n", file: "c.conf")
    #expect(config.nodes.count == 2)
}

@Test func duplicateSectionIsRejected() {
    let error = configError("[cluster]\nfanout = mesh\n[limits]\n[cluster]\nsecret = x\n" + oneNode)
    #expect(error?.description == "cluster.conf:4: duplicate section [cluster] (first at line 1); put all its keys in one section")
}

@Test func duplicateNodeNamePointsAtSecondAndMentionsFirst() {
    let error = configError("[node a1]\nlisten = 127.0.0.1:6001\n\n[node a1]\nlisten = 127.0.0.1:6002\n")
    #expect(error?.description == "cluster.conf:4: duplicate node name 'a1' (first defined at line 1)")
}

@Test func nodeHeaderWithoutNameIsRejected() {
    let error = configError("[node]\nlisten = 127.0.0.1:6001\n")
    #expect(error?.description == "cluster.conf:1: [node] needs a name: [node NAME], e.g. [node a1]")
}

@Test func nodeHeaderWithTwoNamesIsRejected() {
    let error = configError(oneNode + "[node a b]\n")
    #expect(error?.description == "cluster.conf:3: a node header takes exactly one name, e.g. [node a1]; got '[node a b]'")
}

@Test func nodeNamesMustBeShortAndPlain() {
    let slash = configError("[node a/b]\nlisten = 127.0.0.1:6001\n")
    #expect(slash?.description == "cluster.conf:1: invalid node name 'a/b': use 1-64 characters of A-Z a-z 0-9 _ . -")
    let long = String(repeating: "n", count: 65)
    #expect(configError("[node \(long)]\nlisten = 127.0.0.1:6001\n")?.line == 1)
    let longest = String(repeating: "n", count: 64)
    #expect(configError("[node \(longest)]\nlisten = 127.0.0.1:6001\n") == nil)
}

@Test func spacesInsideHeaderBracketsAreTolerated() throws {
    let config = try ClusterConfig.parse("[ node\ta1 ]\nlisten = 127.0.0.1:6001\n[ cluster ]\n", file: "c.conf")
    #expect(config.nodes.first?.name == "a1")
}

@Test func fixedSectionTakesNoName() {
    let error = configError("[cluster main]\n" + oneNode)
    #expect(error?.description == "cluster.conf:1: section [cluster] takes no name; got '[cluster main]'")
}

@Test func malformedHeadersAreRejected() {
    #expect(configError("[cluster\n" + oneNode)?.description == "cluster.conf:1: missing ']' in section header '[cluster'")
    #expect(configError("[cluster] fanout = mesh\n" + oneNode)?.description == "cluster.conf:1: unexpected text after ']' in section header '[cluster] fanout = mesh'")
    #expect(configError("[]\n" + oneNode)?.description == "cluster.conf:1: empty section header '[]'; valid sections: [cluster], [redis], [engineio], [limits], [mesh], [recovery], [node NAME]")
    #expect(configError("[[cluster]]\n" + oneNode)?.description == "cluster.conf:1: malformed section header '[[cluster]]'")
}

@Test func headerMayCarryATrailingComment() throws {
    let config = try ClusterConfig.parse("[cluster]   # the cluster\nfanout = mesh\n" + oneNode, file: "c.conf")
    #expect(config.fanout == .mesh)
}

@Test func emptyValueWhereOneIsRequiredIsRejected() {
    #expect(configError("[cluster]\nsecret =\n" + oneNode)?.description == "cluster.conf:2: empty value for 'secret' in [cluster]; expected the shared mesh key (any non-empty string)")
    #expect(configError("[cluster]\nsecret =    # nothing\n" + oneNode)?.line == 2)
    #expect(configError("[node a1]\nlisten =\n")?.description == "cluster.conf:2: empty value for 'listen' in [node a1]; expected host:port, e.g. 127.0.0.1:6001")
    #expect(configError("[limits]\ntext_max = \n" + oneNode)?.description == "cluster.conf:2: empty value for 'text_max' in [limits]; expected a positive integer (characters)")
    #expect(configError("[redis]\nurl=\n" + oneNode)?.line == 2)
    #expect(configError("[engineio]\nallowed_origins = ,\n" + oneNode)?.line == 2)
}

@Test func emptyChannelPrefixIsAllowed() throws {
    let config = try ClusterConfig.parse("[redis]\nchannel_prefix =\n" + oneNode, file: "c.conf")
    #expect(config.channelPrefix == "")
}

@Test func controlCharactersAreRejected() {
    #expect(configError("[cluster]\nsecret = a\u{0}b\n" + oneNode)?.description == "cluster.conf:2: control character 0x00 is not allowed")
    #expect(configError("[cluster]\rfanout = mesh\n" + oneNode)?.description == "cluster.conf:1: stray carriage return (CR) inside the line; use LF or CRLF line endings")
}

@Test func longJunkLinesAreShortenedInMessages() {
    let junk = String(repeating: "x", count: 10_000)
    let error = configError("[cluster]\n\(junk)\n" + oneNode)
    #expect(error?.line == 2)
    #expect((error?.message.count ?? .max) < 200)
}

@Test func errorDescriptionIsFileColonLineColonMessage() {
    #expect(ConfigError(file: "/etc/chatmesh/cluster.conf", line: 7, message: "oops").description == "/etc/chatmesh/cluster.conf:7: oops")
}
