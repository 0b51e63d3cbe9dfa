import ClusterConfig
import Testing

@testable import ClusterSupervisor

struct ReloadPlanTests {
    private func node(_ name: String, _ port: Int) -> NodeEntry {
        NodeEntry(name: name, listen: HostPort(host: "127.0.0.1", port: port))
    }

    @Test func keptNodesReloadAddedStartRemovedStop() {
        let plan = ReloadPlan(running: ["a1", "a2", "a3"], chosen: [node("a1", 1), node("a3", 3), node("a4", 4)])
        #expect(plan.reload == ["a1", "a3"])
        #expect(plan.start.map(\.name) == ["a4"])
        #expect(plan.stop == ["a2"])
        #expect(!plan.isEmpty)
    }

    @Test func anUnchangedSetOnlyReloads() {
        let plan = ReloadPlan(running: ["a1", "a2"], chosen: [node("a2", 2), node("a1", 1)])
        #expect(plan.reload == ["a1", "a2"])
        #expect(plan.start.isEmpty && plan.stop.isEmpty && plan.isEmpty)
    }
}
