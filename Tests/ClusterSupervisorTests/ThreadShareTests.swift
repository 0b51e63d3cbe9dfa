import Testing
@testable import ClusterSupervisor

@Suite("ThreadShare")
struct ThreadShareTests {
    @Test func aNodeAloneOnTheHostTakesEveryCore() {
        #expect(ThreadShare.threadsPerNode(cores: 8, localNodes: 1) == 8)
    }

    @Test func nodesOnOneHostShareItsCores() {
        #expect(ThreadShare.threadsPerNode(cores: 2, localNodes: 2) == 1)
        #expect(ThreadShare.threadsPerNode(cores: 8, localNodes: 2) == 4)
        #expect(ThreadShare.threadsPerNode(cores: 8, localNodes: 3) == 2)
    }

    @Test func moreNodesThanCoresStillGetOneThreadEach() {
        #expect(ThreadShare.threadsPerNode(cores: 2, localNodes: 5) == 1)
    }

    @Test func noLocalNodeCountsAsOne() {
        // A node started by name whose listen address is not recognised as local.
        #expect(ThreadShare.threadsPerNode(cores: 4, localNodes: 0) == 4)
    }
}
