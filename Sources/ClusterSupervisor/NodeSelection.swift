import ClusterConfig

/// Which nodes of cluster.conf the supervisor starts on this host.
public enum NodeSelection {
    /// The nodes named in `requested` (nil: every node whose `listen` address is local),
    /// in file order.
    public static func choose(
        from nodes: [NodeEntry], requested: [String]?, isLocal: (HostPort) -> Bool
    ) -> Result<[NodeEntry], NodeSelectionError> {
        let known = nodes.map(\.name)
        guard let requested else {
            let local = nodes.filter { isLocal($0.listen) }
            return local.isEmpty ? .failure(.noLocalNodes(known: known)) : .success(local)
        }
        if requested.isEmpty { return .failure(.emptyList) }
        let unknown = requested.filter { !known.contains($0) }
        if !unknown.isEmpty { return .failure(.unknownNodes(unknown, known: known)) }
        return .success(nodes.filter { requested.contains($0.name) })
    }

    /// `a1,a2` (commas and/or blanks between names); duplicates dropped, order kept.
    public static func parseList(_ text: String) -> [String] {
        var names: [String] = []
        for part in text.split(whereSeparator: { $0 == "," || $0 == " " || $0 == "\t" }) {
            let name = String(part)
            if !names.contains(name) { names.append(name) }
        }
        return names
    }
}

public enum NodeSelectionError: Error, Equatable, CustomStringConvertible {
    case unknownNodes([String], known: [String])
    case emptyList
    case noLocalNodes(known: [String])

    public var description: String {
        switch self {
        case .unknownNodes(let names, let known):
            let list = names.map { "'\($0)'" }.joined(separator: ", ")
            return "unknown node\(names.count == 1 ? "" : "s") \(list) in --nodes; the config has: \(known.joined(separator: ", "))"
        case .emptyList:
            return "--nodes names no node; give a comma-separated list such as --nodes a1,a2"
        case .noLocalNodes(let known):
            return "no node's listen address is on this host (nodes: \(known.joined(separator: ", "))); name the nodes to start with --nodes"
        }
    }
}
