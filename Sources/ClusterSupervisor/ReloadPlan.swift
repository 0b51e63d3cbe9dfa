import ClusterConfig

/// What `chatmesh cluster` does with its node processes when cluster.conf is reloaded:
/// the nodes it runs and still should get SIGHUP (each reloads the file itself), the nodes
/// newly chosen for this host are started, and the nodes no longer chosen are stopped.
public struct ReloadPlan: Equatable, Sendable {
    /// Still chosen: told to reload (SIGHUP).
    public var reload: [String]
    /// Newly chosen: started from the new file.
    public var start: [NodeEntry]
    /// No longer chosen (removed from the file, or moved to another host): stopped (SIGTERM).
    public var stop: [String]

    /// `running`: the nodes the supervisor runs now (in its order); `chosen`: the nodes the
    /// new file selects for this host (`NodeSelection.choose`), in file order.
    public init(running: [String], chosen: [NodeEntry]) {
        let chosenNames = Set(chosen.map(\.name))
        reload = running.filter { chosenNames.contains($0) }
        stop = running.filter { !chosenNames.contains($0) }
        start = chosen.filter { !running.contains($0.name) }
    }

    public var isEmpty: Bool { start.isEmpty && stop.isEmpty }
}
