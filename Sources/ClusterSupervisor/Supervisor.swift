import ClusterConfig
import Dispatch
import Logging
import NIOCore
import NIOPosix
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// `chatmesh cluster`: runs one `chatmesh serve` child per node, restarts the ones that
/// fail, reports the cluster's connection count, and stops them all on SIGTERM / SIGINT —
/// the master of the original cluster.js. SIGHUP reloads cluster.conf: every node is told to
/// reload (SIGHUP), nodes the file now places on this host are started, and nodes it no
/// longer does are stopped (see `ReloadPlan`).
///
/// All state lives on one serial queue. Children are reaped by a dedicated thread that
/// waits with `waitid(WNOWAIT)` and reaps on the queue, so a pid is never signalled after
/// it was reaped (and possibly reused).
///
/// Orphans: posix_spawn cannot set PR_SET_PDEATHSIG, so children do not die with the
/// supervisor by themselves. Every way the supervisor stops on its own (SIGTERM, SIGINT,
/// every node gone) stops and reaps the children first, and SIGPIPE is ignored so
/// a closed stdout cannot kill it. Children stay in the supervisor's process group, so
/// Ctrl-C in a terminal reaches them directly and `kill -TERM -PGID` stops the lot; only
/// SIGKILL of the supervisor itself (or a crash) can leave them running, which is what
/// systemd's KillMode=control-group or a subreaper is for.
// @unchecked Sendable: every mutable property is only read and written on `queue`.
public final class Supervisor: @unchecked Sendable {
    public struct Options: Sendable {
        public var configPath: String
        public var logLevel: String
        public var pollInterval: Duration = .seconds(1)
        public var pollTimeout: Duration = .seconds(1)
        /// How long children get between SIGTERM and SIGKILL.
        public var stopTimeout: Duration = .seconds(15)
        public var backoff = RestartBackoff()
        /// `--nodes`: the nodes to run; nil runs those whose listen address is on this host
        /// (chosen again at each reload).
        public var requestedNodes: [String]?

        public init(configPath: String, logLevel: String) {
            self.configPath = configPath
            self.logLevel = logLevel
        }
    }

    /// One node's state, kept in `children` and changed there in place (on `queue`). Closures
    /// that outlive a call name the node by its index, which never changes, not by a reference.
    private struct Child {
        let node: NodeEntry
        var pid: pid_t?
        var startedAt = ContinuousClock.now
        var starts = 0
        var backoff: RestartBackoff
        var restart: DispatchWorkItem?
        /// The running process has answered /healthz.
        var answering = false
        /// The page URL was printed (once per node, not per process).
        var announced = false
        var pollInFlight = false
        /// A reload took it out of the config (or off this host): stopped, never restarted.
        var removed = false

        init(node: NodeEntry, backoff: RestartBackoff) {
            self.node = node
            self.backoff = backoff
        }
    }

    private let options: Options
    private var spawner: ChildSpawner
    private let logger: Logger
    private let queue = DispatchQueue(label: "chatmesh.cluster")
    private var children: [Child]
    private var tally: ConnectionTally
    private var stopping = false
    private var finished = false
    private var exitCode: Int32 = 0
    private let done = DispatchSemaphore(value: 0)
    /// Wakes the reaper when it found no child to wait for.
    private let childStarted = DispatchSemaphore(value: 0)
    private let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    private let healthz: HealthzClient
    private var pollTimer: (any DispatchSourceTimer)?
    private var signalSources: [any DispatchSourceSignal] = []
    /// Called (on the supervisor's queue) when a stop signal arrives, before the nodes are told.
    public var onStopping: (@Sendable () -> Void)? {
        get { queue.sync { stoppingHandler } }
        set { queue.sync { stoppingHandler = newValue } }
    }
    private var stoppingHandler: (@Sendable () -> Void)?
    /// Called (on the supervisor's queue) with true when SIGHUP starts a reload and false
    /// once the nodes were told, started and stopped (systemd's RELOADING=1 / READY=1).
    public var onReload: (@Sendable (_ starting: Bool) -> Void)? {
        get { queue.sync { reloadHandler } }
        set { queue.sync { reloadHandler = newValue } }
    }
    private var reloadHandler: (@Sendable (Bool) -> Void)?

    public init(nodes: [NodeEntry], options: Options, spawner: ChildSpawner = .currentExecutable(), logger: Logger) {
        self.options = options
        self.spawner = spawner
        self.logger = logger
        self.children = nodes.map { Child(node: $0, backoff: options.backoff) }
        self.tally = ConnectionTally(nodes: nodes.map(\.name))
        self.healthz = HealthzClient(group: group)
    }

    /// Starts every node and blocks until the supervisor stopped.
    /// - Returns: the process exit status (0 after a signal-requested stop).
    public func run() -> Int32 {
        startReaper()
        queue.sync {
            installSignalHandlers()
            logger.info("starting \(children.count) node\(children.count == 1 ? "" : "s"): \(children.map(\.node.name).joined(separator: ", "))",
                        metadata: ["config": "\(options.configPath)"])
            for index in children.indices { spawn(index) }
            startPolling()
        }
        done.wait()
        queue.sync {
            pollTimer?.cancel()
            for source in signalSources { source.cancel() }
        }
        try? group.syncShutdownGracefully()
        return queue.sync { exitCode }
    }

    // MARK: children (on `queue`)

    private func spawn(_ index: Int) {
        dispatchPrecondition(condition: .onQueue(queue))
        let node = children[index].node
        guard !stopping, children[index].pid == nil else { return }
        let arguments = ["serve", "--config", options.configPath, "--node", node.name, "--log-level", options.logLevel]
        let pid: pid_t
        do {
            pid = try spawner.spawn(arguments: arguments)
        } catch {
            logger.error("cannot start node: \(error)", metadata: ["node": "\(node.name)"])
            scheduleRestart(index, ranFor: .zero)
            return
        }
        children[index].pid = pid
        children[index].startedAt = .now
        children[index].starts += 1
        children[index].answering = false
        childStarted.signal()
        logger.info(children[index].starts == 1 ? "node started" : "node restarted",
                    metadata: ["node": "\(node.name)", "pid": "\(pid)", "listen": "\(node.listen)"])
    }

    /// Called on `queue` with the status of a reaped child.
    private func childExited(pid: pid_t, status: Int32) {
        dispatchPrecondition(condition: .onQueue(queue))
        guard let index = children.firstIndex(where: { $0.pid == pid }) else {
            logger.debug("reaped a process that is not a node", metadata: ["pid": "\(pid)"])
            return
        }
        let name = children[index].node.name
        let exit = ChildExit(waitStatus: status) ?? .exited(-1)
        let ranFor = ContinuousClock.now - children[index].startedAt
        children[index].pid = nil
        children[index].answering = false
        tally.record(name, connections: nil)
        var metadata: Logger.Metadata = [
            "node": "\(name)", "pid": "\(pid)", "status": "\(exit)", "ran": "\(formatSeconds(ranFor))",
        ]
        if children[index].removed {
            logger.info("node stopped (removed by a reload)", metadata: metadata)
            return
        }
        if stopping {
            logger.info("node stopped", metadata: metadata)
            if children.allSatisfy({ $0.pid == nil }) {
                logger.info("every node has stopped")
                finish(0)
            }
            return
        }
        reportConnections()
        if exit.isAbnormal {
            let delay = children[index].backoff.nextDelay(ranFor: ranFor)
            metadata["restart_in"] = "\(formatSeconds(delay))"
            logger.error("node exited abnormally; restarting it", metadata: metadata)
            scheduleRestart(index, delay: delay)
        } else {
            logger.notice("node exited on its own with status 0; not restarting it", metadata: metadata)
            if children.allSatisfy({ $0.pid == nil && $0.restart == nil }) {
                logger.notice("every node has exited; nothing left to supervise")
                finish(0)
            }
        }
    }

    private func scheduleRestart(_ index: Int, ranFor: Duration) {
        let delay = children[index].backoff.nextDelay(ranFor: ranFor)
        logger.notice("restarting node later", metadata: ["node": "\(children[index].node.name)", "restart_in": "\(formatSeconds(delay))"])
        scheduleRestart(index, delay: delay)
    }

    private func scheduleRestart(_ index: Int, delay: Duration) {
        let work = DispatchWorkItem { [self] in
            children[index].restart = nil
            spawn(index)
        }
        children[index].restart?.cancel()
        children[index].restart = work
        queue.asyncAfter(deadline: .now() + dispatchInterval(delay), execute: work)
    }

    private func finish(_ code: Int32) {
        guard !finished else { return }
        finished = true
        exitCode = code
        done.signal()
    }

    // MARK: stopping

    private func installSignalHandlers() {
        dispatchPrecondition(condition: .onQueue(queue))
        // A closed stdout must not kill the supervisor (that would orphan the nodes).
        signal(SIGPIPE, SIG_IGN)
        for number in [SIGTERM, SIGINT, SIGHUP] {
            let previous = signal(number, SIG_IGN)
            // Started under nohup: keep ignoring hangups, and so do the nodes.
            if number == SIGHUP, let previous, unsafeBitCast(previous, to: Int.self) == unsafeBitCast(SIG_IGN, to: Int.self) {
                spawner.defaultSignals.remove(SIGHUP)
                continue
            }
            let source = DispatchSource.makeSignalSource(signal: number, queue: queue)
            source.setEventHandler { [self] in
                if number == SIGHUP { reload() } else { stop(signal: number) }
            }
            source.resume()
            signalSources.append(source)
        }
    }

    private func stop(signal number: Int32) {
        dispatchPrecondition(condition: .onQueue(queue))
        let name = ChildExit.signalName(number) ?? "signal \(number)"
        guard !stopping else {
            logger.notice("\(name) received while stopping; still waiting for the nodes")
            return
        }
        stopping = true
        stoppingHandler?()
        pollTimer?.cancel()
        for index in children.indices {
            children[index].restart?.cancel()
            children[index].restart = nil
        }
        let running = children.filter { $0.pid != nil }
        logger.notice("\(name) received: stopping \(running.count) node\(running.count == 1 ? "" : "s")")
        guard !running.isEmpty else {
            finish(0)
            return
        }
        for child in running {
            if let pid = child.pid { kill(pid, SIGTERM) }
        }
        queue.asyncAfter(deadline: .now() + dispatchInterval(options.stopTimeout)) { [self] in
            for child in children {
                guard let pid = child.pid else { continue }
                logger.warning("node did not stop within \(formatSeconds(options.stopTimeout)); killing it",
                               metadata: ["node": "\(child.node.name)", "pid": "\(pid)"])
                kill(pid, SIGKILL)
            }
        }
    }

    // MARK: reloading

    /// SIGHUP: re-reads cluster.conf, tells the nodes that stay to reload it (each logs what
    /// it applies, or rejects a bad file at its line), starts the nodes the file now places
    /// on this host and stops the ones it no longer does. A file that cannot be loaded
    /// changes no process; the nodes are still told, so each counts the rejection.
    private func reload() {
        dispatchPrecondition(condition: .onQueue(queue))
        guard !stopping else { return }
        reloadHandler?(true)
        defer { reloadHandler?(false) }
        let active = children.indices.filter { !children[$0].removed }
        let forward = { [self] (names: [String]) in
            for index in active where names.contains(children[index].node.name) {
                if let pid = children[index].pid { kill(pid, SIGHUP) }
            }
        }
        let activeNames = active.map { children[$0].node.name }
        let config: ClusterConfig
        do {
            config = try ClusterConfig.load(path: options.configPath)
        } catch {
            logger.error("SIGHUP: reload rejected, the nodes run on as they are: \(error)")
            forward(activeNames)
            return
        }
        let local = LocalAddresses.current()
        let chosen: [NodeEntry]
        switch NodeSelection.choose(from: config.nodes, requested: options.requestedNodes, isLocal: { local.contains($0) }) {
        case .success(let list): chosen = list
        case .failure(let error):
            logger.error("SIGHUP: \(options.configPath): \(error); the nodes run on as they are")
            forward(activeNames)
            return
        }
        let plan = ReloadPlan(running: activeNames, chosen: chosen)
        logger.notice("SIGHUP: reloading", metadata: [
            "config": "\(options.configPath)", "reload": "\(plan.reload.joined(separator: ","))",
            "start": "\(plan.start.map(\.name).joined(separator: ","))", "stop": "\(plan.stop.joined(separator: ","))",
        ])
        for index in active where plan.stop.contains(children[index].node.name) {
            children[index].removed = true
            children[index].restart?.cancel()
            children[index].restart = nil
            tally.record(children[index].node.name, connections: nil)
            guard let pid = children[index].pid else { continue }
            logger.notice("node removed by the reload: stopping it", metadata: ["node": "\(children[index].node.name)", "pid": "\(pid)"])
            kill(pid, SIGTERM)
            queue.asyncAfter(deadline: .now() + dispatchInterval(options.stopTimeout)) { [self] in
                guard children[index].pid == pid else { return }
                logger.warning("removed node did not stop within \(formatSeconds(options.stopTimeout)); killing it",
                               metadata: ["node": "\(children[index].node.name)", "pid": "\(pid)"])
                kill(pid, SIGKILL)
            }
        }
        forward(plan.reload)
        for entry in plan.start {
            children.append(Child(node: entry, backoff: options.backoff))
            spawn(children.count - 1)
        }
        tally.setNodes(children.filter { !$0.removed }.map(\.node.name))
        reportConnections()
    }

    // MARK: reaping

    private func startReaper() {
        let body = ThreadBody { [self] in reapForever() }
        var thread = pthread_t()
        let result = pthread_create(&thread, nil, { argument in
            Unmanaged<ThreadBody>.fromOpaque(argument!).takeRetainedValue().run()
            return nil
        }, Unmanaged.passRetained(body).toOpaque())
        precondition(result == 0, "cannot start the reaper thread: error \(result)")
        pthread_detach(thread)
    }

    /// Waits for any child to exit without reaping it, then reaps it on `queue`: signals
    /// are only sent on `queue`, so they never reach a pid that was reaped meanwhile.
    private func reapForever() {
        while true {
            var info = siginfo_t()
            if waitid(P_ALL, 0, &info, WEXITED | WNOWAIT) != 0 {
                switch errno {
                case EINTR: continue
                case ECHILD: childStarted.wait()
                default:
                    logger.error("waitid failed: error \(errno)")
                    usleep(100_000)
                }
                continue
            }
            let pid = info._sifields._sigchld.si_pid
            queue.sync {
                var status: Int32 = 0
                var reaped: pid_t
                repeat { reaped = waitpid(pid, &status, 0) } while reaped < 0 && errno == EINTR
                if reaped == pid { childExited(pid: pid, status: status) }
            }
        }
    }

    // MARK: health polling

    private func startPolling() {
        let timer = DispatchSource.makeTimerSource(queue: queue)
        timer.schedule(deadline: .now() + dispatchInterval(options.pollInterval), repeating: dispatchInterval(options.pollInterval))
        timer.setEventHandler { [self] in pollAll() }
        timer.resume()
        pollTimer = timer
    }

    private func pollAll() {
        guard !stopping else { return }
        let timeout = TimeAmount.nanoseconds(Int64(nanoseconds(options.pollTimeout)))
        for index in children.indices {
            guard let pid = children[index].pid, !children[index].pollInFlight, !children[index].removed else { continue }
            children[index].pollInFlight = true
            healthz.fetch(children[index].node.listen, tls: children[index].node.clientTLS != nil, timeout: timeout) { [self] result in
                queue.async { self.pollAnswered(index, pid: pid, result: result) }
            }
        }
    }

    private func pollAnswered(_ index: Int, pid: pid_t, result: Result<HealthzReport, HealthzError>) {
        children[index].pollInFlight = false
        guard !stopping, children[index].pid == pid else { return }
        let node = children[index].node
        let name = node.name
        var outcome = result
        if case .success(let report) = result, let answeredAs = report.node, answeredAs != name {
            outcome = .failure(HealthzError("answered as node '\(answeredAs)'; another process holds \(node.listen)"))
        }
        switch outcome {
        case .success(let report):
            tally.record(name, connections: report.connections)
            if !children[index].answering {
                children[index].answering = true
                logger.info("node is serving", metadata: [
                    "node": "\(name)", "pid": "\(pid)", "after": "\(formatSeconds(ContinuousClock.now - children[index].startedAt))",
                ])
                if !children[index].announced {
                    children[index].announced = true
                    writeToStandardOutput("node \(name): chat page at \(node.clientTLS == nil ? "http" : "https")://\(node.listen)/\n")
                }
            }
        case .failure(let error):
            tally.record(name, connections: nil)
            if children[index].answering {
                children[index].answering = false
                logger.warning("node stopped answering /healthz", metadata: ["node": "\(name)", "pid": "\(pid)", "reason": "\(error)"])
            } else {
                logger.trace("node not answering /healthz yet", metadata: ["node": "\(name)", "reason": "\(error)"])
            }
        }
        reportConnections()
    }

    /// True once every node's current process answers /healthz (for systemd's READY=1).
    /// Call from outside the supervisor's queue.
    public var allServing: Bool {
        queue.sync {
            let active = children.filter { !$0.removed }
            return !active.isEmpty && active.allSatisfy { $0.pid != nil && $0.answering }
        }
    }

    /// One line for systemd's STATUS=. Call from outside the supervisor's queue.
    public var statusLine: String {
        queue.sync {
            let active = children.filter { !$0.removed }
            let serving = active.filter(\.answering).count
            return "\(serving)/\(active.count) nodes serving, \(tally.current.total) connections"
        }
    }

    private func reportConnections() {
        guard let message = tally.changeMessage() else { return }
        let current = tally.current
        logger.info("\(message)", metadata: ["total": "\(current.total)", "nodes": "\(tally.perNode)"])
    }
}

/// Writes `text` to fd 1 at once (a line at a time, so a reader of a pipe sees each whole):
/// Glibc's `stdout` is a global var that Swift 6 will not touch, and nothing else here buffers.
private func writeToStandardOutput(_ text: String) {
    var bytes = Array(text.utf8)[...]
    while !bytes.isEmpty {
        let written = bytes.withUnsafeBytes { write(STDOUT_FILENO, $0.baseAddress, $0.count) }
        if written > 0 {
            bytes = bytes.dropFirst(written)
        } else if written < 0 && errno == EINTR {
            continue
        } else {
            return // stdout closed: nobody is left to read the line
        }
    }
}

private final class ThreadBody {
    let run: () -> Void
    init(_ run: @escaping () -> Void) { self.run = run }
}

private func nanoseconds(_ duration: Duration) -> Int64 {
    let (seconds, attoseconds) = duration.components
    return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
}

private func dispatchInterval(_ duration: Duration) -> DispatchTimeInterval {
    .nanoseconds(Int(nanoseconds(duration)))
}

/// `0.5s`, `12.0s`.
func formatSeconds(_ duration: Duration) -> String {
    let tenths = max(0, nanoseconds(duration) / 100_000_000)
    return "\(tenths / 10).\(tenths % 10)s"
}
