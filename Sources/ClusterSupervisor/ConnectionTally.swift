/// The cluster's total connection count, as the original cluster.js master logged it.
/// A node that does not answer its /healthz poll (starting, dead, stalled) is unknown,
/// never counted as 0, so the log does not claim connections vanished.
public struct ConnectionTally: Sendable {
    /// In the order the supervisor started them.
    public private(set) var nodes: [String]
    private var counts: [String: Int] = [:]
    private var lastReport: Report?

    public struct Report: Equatable, Sendable {
        public var total: Int
        public var unknown: [String]
    }

    public init(nodes: [String]) { self.nodes = nodes }

    /// A reload changed the nodes the supervisor runs: a removed node's count goes with it.
    public mutating func setNodes(_ names: [String]) {
        nodes = names
        counts = counts.filter { names.contains($0.key) }
    }

    /// A poll result: a count, or nil when the poll failed.
    public mutating func record(_ node: String, connections: Int?) {
        counts[node] = connections
    }

    public func count(of node: String) -> Int? { counts[node] }

    public var current: Report {
        Report(
            total: nodes.reduce(0) { $0 + (counts[$1] ?? 0) },
            unknown: nodes.filter { counts[$0] == nil }
        )
    }

    /// The line to log when the total or the set of unknown nodes changed since the last
    /// call that returned one; nil otherwise. Nothing is reported until some node answered.
    public mutating func changeMessage() -> String? {
        let report = current
        if report == lastReport { return nil }
        if lastReport == nil && report.unknown.count == nodes.count { return nil }
        lastReport = report
        return Self.message(report, nodeCount: nodes.count)
    }

    /// `a1=5 a2=?`, for log metadata.
    public var perNode: String {
        nodes.map { "\($0)=\(counts[$0].map(String.init) ?? "?")" }.joined(separator: " ")
    }

    static func message(_ report: Report, nodeCount: Int) -> String {
        if report.unknown.isEmpty { return "cluster connections: \(report.total)" }
        let missing = report.unknown.joined(separator: ", ")
        if report.unknown.count == nodeCount { return "cluster connections: unknown (not answering: \(missing))" }
        return "cluster connections: \(report.total) (not answering: \(missing))"
    }
}
