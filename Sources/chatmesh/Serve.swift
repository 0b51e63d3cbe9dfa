import ArgumentParser
import ChatServer
import ClusterConfig
import ClusterSecurity
import ClusterSupervisor
import Dispatch
import Logging
import NIOCore
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run one node of the cluster.",
        discussion: """
        Binds the node's `listen` address from cluster.conf and serves Socket.IO clients, the chat \
        page (/), /healthz and /metrics there. SIGTERM or SIGINT tells every client to reconnect \
        elsewhere (Engine.IO close) and exits.
        """
    )

    @Option(name: .long, help: "Path of cluster.conf.")
    var config: String = "cluster.conf"

    @Option(name: .long, help: "This node's name: a [node NAME] section of the config. Optional under socket activation: the node whose listen address the inherited client socket has.")
    var node: String?

    @Option(name: .long, help: "Event-loop threads (default: the host's cores shared among the config's nodes on this host).")
    var threads: Int?

    @Option(name: .long, help: "trace, debug, info, notice, warning, error or critical.")
    var logLevel: LogLevelArgument = .init(.info)

    /// The host's cores shared among the nodes of the config that listen on this host.
    private func defaultThreads(_ config: ClusterConfig) -> Int {
        let local = LocalAddresses.current()
        let localNodes = config.nodes.filter { local.contains($0.listen) }.count
        return ThreadShare.threadsPerNode(cores: System.coreCount, localNodes: localNodes)
    }

    func validate() throws {
        if let threads, threads < 1 || threads > 256 { throw ValidationError("--threads must be between 1 and 256") }
    }

    func run() throws {
        // Every handler reads its level from `levels`, so a reload of `[cluster] log_level`
        // changes the level of every logger the node has handed out (see LiveLogLevel).
        let levels = LiveLogLevel(flag: logLevel.level)
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = .trace  // the wrapper's level decides
            return levels.handler(base: handler)
        }
        ResourceLimits.raiseOpenFileLimit()
        // A SIGHUP while starting (a supervisor forwarding a reload to a node it just spawned)
        // must not kill the node: it reads the file it reloads from below anyway.
        signal(SIGHUP, SIG_IGN)
        let clusterConfig: ClusterConfig
        do {
            clusterConfig = try ClusterConfig.load(path: config)
        } catch {
            throw ValidationError("\(error)")
        }
        let inherited: InheritedSockets
        switch InheritedSockets.fromEnvironment() {
        case .success(let sockets): inherited = sockets
        case .failure(let error): throw ValidationError("socket activation: \(error)")
        }
        let entry = try resolveNode(clusterConfig, inherited: inherited)
        // The same file checks as check-config, for this node's files: a bad key or certificate
        // is named at its cluster.conf line now, not found as failed handshakes later.
        let fileProblems = TLSFileChecks.problems(in: clusterConfig, configFile: config, nodes: [entry.name])
        if !fileProblems.isEmpty {
            throw ValidationError(fileProblems.map { "\($0)" }.joined(separator: "\n"))
        }
        levels.apply(configured: clusterConfig.logLevel)
        var logger = Logger(label: "chatmesh")
        logger[metadataKey: "node"] = "\(entry.name)"

        let threadCount = threads ?? defaultThreads(clusterConfig)
        logger.info("starting", metadata: ["event_loops": "\(threadCount)"])
        let chatNode = ChatNode(config: clusterConfig, node: entry, threads: threadCount, logger: logger, logLevel: levels)
        do {
            try chatNode.start(inherited: inherited)
        } catch let error as ClientTLSSetupError {
            throw ValidationError("\(config):\(error.line): \(error.message)")
        } catch {
            throw ValidationError("cannot listen on \(entry.listen) / \(entry.mesh.map { "\($0)" } ?? "-"): \(error)")
        }
        let heartbeat = ServiceHeartbeat(
            eventLoops: chatNode.eventLoops, isReady: { chatNode.isReady }, status: { chatNode.statusLine }
        )
        heartbeat.start()

        let stopped = DispatchSemaphore(value: 0)
        // One serial queue for every signal, so a second stop signal during shutdown is
        // ignored and a reload never runs beside a drain.
        let signalQueue = DispatchQueue(label: "chatmesh.signals")
        let stopOnce = StopOnce()
        var signals = [SIGTERM, SIGINT].map { number -> DispatchSourceSignal in
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: signalQueue)
            source.setEventHandler {
                guard stopOnce.claim() else { return }
                logger.info("signal received, draining", metadata: ["signal": "\(number)"])
                SystemdNotifier.stopping()
                heartbeat.stop()
                // drain_timeout is live: the reloaded value, if one was.
                chatNode.stop(timeout: chatNode.runningConfig.drainTimeout)
                stopped.signal()
            }
            source.resume()
            return source
        }
        let hangup = DispatchSource.makeSignalSource(signal: SIGHUP, queue: signalQueue)
        let path = config
        hangup.setEventHandler {
            guard !stopOnce.isClaimed else { return }
            Self.reload(chatNode, from: path, logger: logger)
        }
        hangup.resume()
        signals.append(hangup)
        stopped.wait()
        withExtendedLifetime(signals) {}
    }

    /// SIGHUP: re-reads `path` and hands it to the node, between RELOADING=1 and READY=1.
    static func reload(_ chatNode: ChatNode, from path: String, logger: Logger) {
        // Before the node first said READY=1 (Redis mode, waiting for the subscriber), a
        // READY=1 here would announce it too early: the heartbeat says it when it is.
        let announce = chatNode.isReady
        if announce { SystemdNotifier.reloading() }
        defer { if announce { SystemdNotifier.ready() } }
        logger.info("SIGHUP received, reloading", metadata: ["config": "\(path)"])
        let loaded: ClusterConfig
        do {
            loaded = try ClusterConfig.load(path: path)
        } catch {
            // ConfigError prints as FILE:LINE: message.
            chatNode.reloadRejected("\(error)")
            return
        }
        // The file checks a start makes (and check-config): a file that names a TLS file this
        // node cannot use is rejected now, not found at the next restart.
        let fileProblems = TLSFileChecks.problems(in: loaded, configFile: path, nodes: [chatNode.nodeName])
        if !fileProblems.isEmpty {
            chatNode.reloadRejected(fileProblems.map { "\($0)" }.joined(separator: "; "))
            return
        }
        chatNode.reload(to: loaded)
    }
}

extension Serve {
    /// The node to run: `--node`, or the one whose listen address the inherited client socket
    /// is bound to.
    func resolveNode(_ config: ClusterConfig, inherited: InheritedSockets) throws -> NodeEntry {
        if let node {
            guard let entry = config.node(named: node) else {
                let names = config.nodes.map(\.name).joined(separator: ", ")
                throw ValidationError("\(self.config): no [node \(node)] section (nodes: \(names))")
            }
            return entry
        }
        guard let fd = inherited.client, let bound = InheritedSockets.boundAddress(of: fd) else {
            throw ValidationError("--node is required (no inherited client socket to identify the node by)")
        }
        let wildcard = ["0.0.0.0", "::"].contains(bound.host)
        let matches = config.nodes.filter { node in
            node.listen.port == bound.port && (wildcard || InheritedSockets.numericAddresses(of: node.listen.host).contains(bound.host))
        }
        guard matches.count == 1 else {
            let shown = bound.host.contains(":") ? "[\(bound.host)]:\(bound.port)" : "\(bound.host):\(bound.port)"
            throw ValidationError("the inherited client socket is bound to \(shown), which matches \(matches.count) nodes of \(self.config); pass --node")
        }
        return matches[0]
    }
}

/// Lets the first stop signal through and no other (they arrive on one serial queue, but an
/// atomic makes that no longer a matter of trust).
final class StopOnce: Sendable {
    private let claimed = Atomic(false)
    func claim() -> Bool {
        !claimed.exchange(true, ordering: .relaxed)
    }
    var isClaimed: Bool { claimed.load(ordering: .relaxed) }
}

struct LogLevelArgument: ExpressibleByArgument {
    let level: Logger.Level

    init(_ level: Logger.Level) { self.level = level }

    init?(argument: String) {
        guard let level = Logger.Level(rawValue: argument.lowercased()) else { return nil }
        self.level = level
    }

    var defaultValueDescription: String { level.rawValue }
    static var allValueStrings: [String] { Logger.Level.allCases.map(\.rawValue) }
}

enum ResourceLimits {
    /// Many clients means many sockets: raise the soft open-file limit to the hard limit.
    static func raiseOpenFileLimit() {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < limit.rlim_max else { return }
        limit.rlim_cur = limit.rlim_max
        _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
    }
}
