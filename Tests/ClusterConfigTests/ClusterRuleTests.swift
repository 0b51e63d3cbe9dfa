import Testing
@testable import ClusterConfig

@Test func noNodesAtAllIsAWholeFileError() {
    let error = configError("[cluster]\nfanout = mesh\n", file: "n.conf")
    #expect(error?.line == 0)
    #expect(error?.description == "n.conf:0: no [node NAME] section: a cluster needs at least one node, e.g. [node a1] with listen = 127.0.0.1:6001")
    #expect(configError("", file: "n.conf")?.line == 0)
}

@Test func nodeWithoutListenIsReportedAtItsHeader() {
    let error = configError(oneNode + "\n[node a2]\nmesh = 127.0.0.1:7002\n")
    #expect(error?.description == "cluster.conf:4: node 'a2' has no listen address; add 'listen = host:port', e.g. listen = 127.0.0.1:6001")
}

@Test func duplicateListenAddressAcrossNodes() {
    let error = configError("[node a1]\nlisten = 127.0.0.1:6001\n[node a2]\nlisten = 127.0.0.1:6001\n")
    #expect(error?.description == "cluster.conf:4: address 127.0.0.1:6001 (listen of node 'a2') is already used by the listen of node 'a1' at line 2; every listen and mesh address must be unique")
}

@Test func listenOfOneNodeEqualToMeshOfAnother() {
    let text = """
        [node a1]
        listen = 127.0.0.1:6001
        mesh = 127.0.0.1:7001
        [node a2]
        listen = 127.0.0.1:7001
        """
    #expect(configError(text)?.description == "cluster.conf:5: address 127.0.0.1:7001 (listen of node 'a2') is already used by the mesh of node 'a1' at line 3; every listen and mesh address must be unique")
}

@Test func listenEqualToOwnMesh() {
    let error = configError("[node a1]\nmesh = 127.0.0.1:6001\nlisten = 127.0.0.1:6001\n")
    #expect(error?.description == "cluster.conf:3: address 127.0.0.1:6001 (listen of node 'a1') is already used by the mesh of node 'a1' at line 2; every listen and mesh address must be unique")
}

@Test func differentSpellingsOfOneAddressConflict() {
    let v6 = configError("[node a]\nlisten = [::1]:6001\n[node b]\nlisten = [0:0:0:0:0:0:0:1]:6001\n")
    #expect(v6?.line == 4)
    #expect(v6?.message.hasPrefix("address [0:0:0:0:0:0:0:1]:6001 (listen of node 'b') is already used by the listen of node 'a'") == true)
    let name = configError("[node a]\nlisten = Chat.Example.org:6001\n[node b]\nlisten = chat.example.org:6001\n")
    #expect(name?.line == 4)
}

@Test func localhostOverlapsLoopbackOnTheSamePort() {
    let error = configError("[node a]\nlisten = localhost:6001\n[node b]\nlisten = 127.0.0.1:6001\n")
    #expect(error?.description == "cluster.conf:4: address 127.0.0.1:6001 (listen of node 'b') overlaps localhost:6001 (listen of node 'a', line 2): both would bind port 6001 on the same host")
}

@Test func wildcardOverlapsLoopbackOnTheSamePort() {
    let error = configError("[node a]\nlisten = 127.0.0.1:6001\n[node b]\nlisten = 0.0.0.0:6001\n")
    #expect(error?.description == "cluster.conf:4: address 0.0.0.0:6001 (listen of node 'b') overlaps 127.0.0.1:6001 (listen of node 'a', line 2): both would bind port 6001 on the same host")
    #expect(configError("[node a]\nlisten = 0.0.0.0:6001\n[node b]\nlisten = [::]:6001\n")?.line == 4)
}

@Test func samePortOnDifferentHostsIsFine() throws {
    let text = """
        [cluster]
        secret = k2f8a0c6e4b1d9f7a5c3e1b0d8f6a4c2e
        [node a]
        listen = 10.0.0.1:6001
        mesh = 10.0.0.1:7001
        [node b]
        listen = 10.0.0.2:6001
        mesh = 10.0.0.2:7001
        [node c]
        listen = 127.0.0.1:6001
        mesh = 127.0.0.1:7001
        [node d]
        listen = 127.0.0.2:6001
        mesh = 127.0.0.2:7001
        """
    let config = try ClusterConfig.parse(text, file: "c.conf")
    #expect(config.nodes.count == 4)
}

@Test func missingSecretIsReportedAtTheFirstNonLoopbackMesh() {
    let text = """
        [node a1]
        listen = 127.0.0.1:6001
        mesh = 127.0.0.1:7001
        [node b1]
        listen = 10.0.0.2:6001
        mesh = 10.0.0.2:7001
        [node c1]
        listen = 10.0.0.3:6001
        mesh = 10.0.0.3:7001
        """
    #expect(configError(text)?.description == "cluster.conf:6: mesh address 10.0.0.2:7001 of node 'b1' is not loopback, so [cluster] needs 'secret = ...' or 'secret_file = PATH' (the shared key that authenticates mesh links; `chatmesh gen-secret` makes one)")
}

@Test func wildcardMeshNeedsASecret() {
    #expect(configError("[node a1]\nlisten = 127.0.0.1:6001\nmesh = 0.0.0.0:7001\n")?.line == 3)
}

@Test func loopbackMeshNeedsNoSecret() throws {
    let text = """
        [node a1]
        listen = 0.0.0.0:6001
        mesh = 127.0.0.1:7001
        [node a2]
        listen = 10.0.0.1:6002
        mesh = localhost:7002
        [node a3]
        listen = [::]:6003
        mesh = [::1]:7003
        """
    let config = try ClusterConfig.parse(text, file: "c.conf")
    #expect(config.secret == nil)
}

@Test func secretMakesNonLoopbackMeshValid() throws {
    let strong = String(repeating: "k", count: SecretStrength.minimumLength)
    let config = try ClusterConfig.parse("[cluster]\nsecret = \(strong)\n[node a1]\nlisten = 10.0.0.1:6001\nmesh = 10.0.0.1:7001\n", file: "c.conf")
    #expect(config.secret == strong)
}

@Test func fanoutRedisWithoutURLIsReportedAtTheFanoutLine() {
    let error = configError("# redis cluster\n[cluster]\nfanout = redis\n[redis]\nchannel_prefix = x\n" + oneNode)
    #expect(error?.description == "cluster.conf:3: fanout = redis needs a Redis server: add [redis] with url = redis://[user:]password@host[:port][/db]")
}

@Test func badRedisURLIsReportedAtTheURLLine() {
    let error = configError("[cluster]\nfanout = redis\n[redis]\nurl = redis://:pw@host:6379/16\n" + oneNode)
    #expect(error?.description == "cluster.conf:4: bad redis url: database must be an integer 0-15, got '16'")
    let placeholder = configError("[redis]\nurl = redis://[user:]password@host:port/db\n" + oneNode)
    #expect(placeholder?.line == 2)
    #expect(placeholder?.message.hasPrefix("bad redis url: ") == true)
}

@Test func redisURLIsCheckedEvenWhenFanoutIsMesh() {
    #expect(configError("[redis]\nurl = http://host\n" + oneNode)?.description == "cluster.conf:2: bad redis url: unsupported scheme 'http'; expected redis://[user:]password@host[:port][/db]")
}

@Test func meshFanoutWithSeveralNodesNeedsAMeshAddressOnEachNode() {
    let text = """
        [node a1]
        listen = 127.0.0.1:6001
        mesh = 127.0.0.1:7001
        [node a2]
        listen = 127.0.0.1:6002
        """
    #expect(configError(text)?.description == "cluster.conf:4: node 'a2' has no mesh address, but fanout = mesh with 2 nodes needs one on every node; add 'mesh = host:port', e.g. mesh = 127.0.0.1:7001")
}

@Test func meshAddressIsOptionalForOneNodeOrRedisFanout() throws {
    #expect(try ClusterConfig.parse(oneNode, file: "c.conf").nodes.first?.mesh == nil)
    let redis = """
        [cluster]
        fanout = redis
        [redis]
        url = redis://127.0.0.1
        [node a1]
        listen = 127.0.0.1:6001
        [node a2]
        listen = 127.0.0.1:6002
        """
    #expect(try ClusterConfig.parse(redis, file: "c.conf").nodes.count == 2)
}
