import ClusterConfig
import Testing
@testable import ClusterSupervisor

private func node(_ name: String, _ listen: String) -> NodeEntry {
    guard case .success(let address) = HostPort.parse(listen) else { fatalError("bad test address \(listen)") }
    return NodeEntry(name: name, listen: address)
}

private let thisHost = LocalAddresses([IPAddress("10.0.0.5")!, IPAddress("fe80::1")!, IPAddress("192.168.1.20")!])

/// Host names resolve only through this table in tests.
private func resolve(_ name: String) -> [IPAddress] {
    switch name {
    case "me.example.org": return [IPAddress("10.0.0.5")!]
    case "other.example.org": return [IPAddress("10.0.0.6")!, IPAddress("2001:db8::6")!]
    default: return []
    }
}

private func isLocal(_ address: HostPort) -> Bool { thisHost.contains(address, resolve: resolve) }

@Test(arguments: [
    ("127.0.0.1:6001", true), ("127.1.2.3:6001", true), ("localhost:6001", true), ("[::1]:6001", true),
    ("[::ffff:127.0.0.1]:6001", true),
    ("0.0.0.0:6001", true), ("[::]:6001", true),
    ("10.0.0.5:6001", true), ("[::ffff:10.0.0.5]:6001", true), ("[FE80::1]:6001", true), ("192.168.1.20:6001", true),
    ("10.0.0.6:6001", false), ("[2001:db8::5]:6001", false),
    ("me.example.org:6001", true), ("other.example.org:6001", false), ("unresolvable.example:6001", false),
])
func listenAddressIsLocal(listen: String, expected: Bool) {
    #expect(isLocal(node("n", listen).listen) == expected)
}

@Test func withoutNodesOptionTheLocalNodesAreChosenInFileOrder() {
    let nodes = [
        node("b1", "10.0.0.6:6001"), node("a1", "127.0.0.1:6001"), node("a2", "10.0.0.5:6002"),
        node("b2", "10.0.0.6:6002"), node("a3", "0.0.0.0:6003"),
    ]
    let chosen = NodeSelection.choose(from: nodes, requested: nil, isLocal: isLocal)
    #expect((try? chosen.get())?.map(\.name) == ["a1", "a2", "a3"])
}

@Test func noLocalNodeIsAnError() {
    let nodes = [node("b1", "10.0.0.6:6001"), node("b2", "10.0.0.7:6001")]
    let result = NodeSelection.choose(from: nodes, requested: nil, isLocal: isLocal)
    #expect(result == .failure(.noLocalNodes(known: ["b1", "b2"])))
    #expect("\(NodeSelectionError.noLocalNodes(known: ["b1", "b2"]))" == "no node's listen address is on this host (nodes: b1, b2); name the nodes to start with --nodes")
}

@Test func nodesOptionChoosesExactlyThoseWhereverTheyListen() {
    let nodes = [node("a1", "127.0.0.1:6001"), node("b1", "10.0.0.6:6001"), node("a2", "127.0.0.1:6002")]
    let chosen = NodeSelection.choose(from: nodes, requested: ["b1", "a1"], isLocal: isLocal)
    #expect((try? chosen.get())?.map(\.name) == ["a1", "b1"])
}

@Test func unknownNamesInNodesOptionAreAllReported() {
    let nodes = [node("a1", "127.0.0.1:6001"), node("a2", "127.0.0.1:6002")]
    let result = NodeSelection.choose(from: nodes, requested: ["a1", "a9", "x"], isLocal: isLocal)
    #expect(result == .failure(.unknownNodes(["a9", "x"], known: ["a1", "a2"])))
    #expect("\(NodeSelectionError.unknownNodes(["a9", "x"], known: ["a1", "a2"]))" == "unknown nodes 'a9', 'x' in --nodes; the config has: a1, a2")
    #expect("\(NodeSelectionError.unknownNodes(["A1"], known: ["a1"]))" == "unknown node 'A1' in --nodes; the config has: a1")
}

@Test func emptyNodesOptionIsAnError() {
    let nodes = [node("a1", "127.0.0.1:6001")]
    #expect(NodeSelection.choose(from: nodes, requested: NodeSelection.parseList(" , "), isLocal: isLocal) == .failure(.emptyList))
}

@Test func nodesListIsSplitOnCommasAndBlanksWithoutDuplicates() {
    #expect(NodeSelection.parseList("a1,a2") == ["a1", "a2"])
    #expect(NodeSelection.parseList(" a2 , a1,,a2\ta3 ") == ["a2", "a1", "a3"])
    #expect(NodeSelection.parseList("") == [])
}

@Test func ipAddressesNormalizeMappedIPv4AndRejectNames() {
    #expect(IPAddress("::ffff:10.0.0.5") == IPAddress("10.0.0.5"))
    #expect(IPAddress("0:0:0:0:0:0:0:1") == IPAddress("::1"))
    #expect(IPAddress("::1")?.isLoopback == true)
    #expect(IPAddress("127.0.0.1")?.isLoopback == true)
    #expect(IPAddress("::")?.isWildcard == true)
    #expect(IPAddress("0.0.0.0")?.isWildcard == true)
    #expect(IPAddress("localhost") == nil)
    #expect(IPAddress("1.2.3") == nil)
    #expect(IPAddress("fe80::1%eth0") == nil)
    #expect(IPAddress("10.0.0.5")?.description == "10.0.0.5")
    #expect(IPAddress("2001:db8::6")?.description == "2001:db8:0:0:0:0:0:6")
    #expect(IPAddress(bytes: [1, 2, 3]) == nil)
}

@Test func thisHostHasALoopbackInterface() {
    // getifaddrs on any Linux host lists lo with 127.0.0.1.
    #expect(LocalAddresses.current().addresses.contains(IPAddress("127.0.0.1")!))
}
