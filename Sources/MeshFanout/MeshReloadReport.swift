/// What `MeshFanout.apply` changed, for the node's log line after a reload.
public struct MeshReloadReport: Sendable, Equatable, CustomStringConvertible {
    /// A peer whose `mesh` address changed.
    public struct Readdressed: Sendable, Equatable {
        public var peer: String
        public var from: String
        public var to: String
        /// This node dials it, so its link was closed and redialed at `to`. (A peer that dials
        /// this node keeps its link: the new address only matters to whoever dials it.)
        public var redialed: Bool
    }

    /// Peers new in cluster.conf, sorted: dialed (or awaited, when they dial this node).
    public var added: [String] = []
    /// Peers gone from cluster.conf, sorted: their links closed with GOODBYE, their state dropped.
    public var removed: [String] = []
    public var readdressed: [Readdressed] = []
    /// `[mesh]` settings that changed, as `key old -> new` (times in ms), in the order of
    /// docs/CONFIG.md.
    public var settingsChanged: [String] = []
    /// What a reader of the log must know beyond that (for example that existing links keep
    /// their old `max_frame`).
    public var notes: [String] = []

    public init() {}

    public var isEmpty: Bool {
        added.isEmpty && removed.isEmpty && readdressed.isEmpty && settingsChanged.isEmpty && notes.isEmpty
    }

    /// One line: "mesh: peers added a4; removed a3; ping_interval 1000 -> 500; …", or
    /// "mesh: no changes".
    public var description: String {
        var parts: [String] = []
        if !added.isEmpty { parts.append("peers added \(added.joined(separator: ", "))") }
        if !removed.isEmpty { parts.append("peers removed \(removed.joined(separator: ", "))") }
        for moved in readdressed {
            parts.append("peer \(moved.peer) moved \(moved.from) -> \(moved.to)\(moved.redialed ? " (redialed)" : "")")
        }
        parts += settingsChanged
        parts += notes
        return "mesh: " + (parts.isEmpty ? "no changes" : parts.joined(separator: "; "))
    }
}
