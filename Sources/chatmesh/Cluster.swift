import ArgumentParser
import ChatServer
import ClusterConfig
import ClusterSupervisor
import Logging

struct Cluster: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the nodes of this host as child processes and keep them running.",
        discussion: """
        Starts `chatmesh serve --config FILE --node NAME` for every node of cluster.conf whose \
        listen address is on this host (loopback, an address of one of its interfaces, or \
        0.0.0.0 / ::), or for exactly the nodes named by --nodes. A node that exits abnormally \
        is restarted after 0.5 s, doubling up to 10 s (back to 0.5 s once it ran 30 s); one that \
        exits with status 0 is left stopped. Each node's /healthz is polled every second: its \
        page URL is printed on stdout once it first answers, and the cluster's total connection \
        count is logged whenever it changes. SIGTERM or SIGINT stops every node (SIGTERM, then \
        SIGKILL after 15 s) and exits 0. SIGHUP reloads the config: every node is sent SIGHUP \
        (each reloads the file itself), nodes the file now places on this host (or --nodes \
        names) are started, and nodes it no longer does are stopped. Nodes stay in the supervisor's process group; only \
        SIGKILL of the supervisor itself leaves them running.
        """
    )

    @Option(name: .long, help: "Path of cluster.conf.")
    var config: String = "cluster.conf"

    @Option(name: .long, help: "Comma-separated node names to run (default: the nodes local to this host).")
    var nodes: String?

    @Option(name: .long, help: "Log level of the supervisor and the nodes: trace, debug, info, notice, warning, error or critical.")
    var logLevel: LogLevelArgument = .init(.info)

    func run() throws {
        let level = logLevel.level
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let clusterConfig: ClusterConfig
        do {
            clusterConfig = try ClusterConfig.load(path: config)
        } catch {
            printError("\(error)")
            throw ExitCode(1)
        }
        let local = LocalAddresses.current()
        let selection = NodeSelection.choose(
            from: clusterConfig.nodes,
            requested: nodes.map(NodeSelection.parseList),
            isLocal: { local.contains($0) }
        )
        let chosen: [NodeEntry]
        switch selection {
        case .success(let list): chosen = list
        case .failure(let error):
            printError("\(config): \(error)")
            throw ExitCode(2)
        }

        var logger = Logger(label: "chatmesh.cluster")
        logger.logLevel = level
        let skipped = clusterConfig.nodes.filter { node in !chosen.contains { $0.name == node.name } }
        if !skipped.isEmpty {
            logger.info("not starting nodes of other hosts\(nodes == nil ? "" : " or not named by --nodes")",
                        metadata: ["nodes": "\(skipped.map(\.name).joined(separator: ", "))"])
        }
        var options = Supervisor.Options(configPath: config, logLevel: level.rawValue)
        options.requestedNodes = nodes.map(NodeSelection.parseList)
        let supervisor = Supervisor(nodes: chosen, options: options, logger: logger)
        // The whole cluster as one systemd unit: ready once every node serves, stopping on
        // SIGTERM; the nodes themselves do not talk to systemd (the spawner hides it from them).
        let heartbeat = ServiceHeartbeat(eventLoops: [], isReady: { supervisor.allServing }, status: { supervisor.statusLine })
        supervisor.onStopping = {
            SystemdNotifier.stopping()
            heartbeat.stop()
        }
        supervisor.onReload = { starting in
            if starting { SystemdNotifier.reloading() } else { SystemdNotifier.ready() }
        }
        heartbeat.start()
        let status = supervisor.run()
        if status != 0 { throw ExitCode(status) }
    }
}
