import Dispatch
import Foundation
import Histogram
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOWebSocket
#if canImport(Glibc)
import Glibc
#endif

/// Runs one bench: connect and join every client, (idle: hold them) or let the senders say for
/// warmup + duration, drain, then gather every loop's counters into a `BenchReport`.
public final class BenchRunner {
    public let options: BenchOptions
    /// Progress lines (`# …`) go here; the table and JSON are the caller's to print.
    public var log: (String) -> Void = { line in
        // One write(2) per line: Glibc's `stderr` is a global var that Swift 6 will not touch.
        let bytes = Array((line + "\n").utf8)
        _ = bytes.withUnsafeBytes { write(STDERR_FILENO, $0.baseAddress, $0.count) }
    }
    /// Called once every idle connection is up (idle mode), with the connect figures so far.
    public var onIdleReady: (BenchReport) -> Void = { _ in }

    private let shared: BenchShared
    private let group: MultiThreadedEventLoopGroup
    /// Each loop's counters, made on that loop and only reached there.
    private var loopStats: [ObjectIdentifier: NIOLoopBound<LoopStats>] = [:]
    private var loops: [EventLoop] = []
    private let stop = DispatchSemaphore(value: 0)
    private var signalSources: [DispatchSourceSignal] = []

    public init(options: BenchOptions) throws {
        try options.validate()
        self.options = options
        self.shared = BenchShared(options: options)
        self.group = MultiThreadedEventLoopGroup(numberOfThreads: options.threads)
        for loop in group.makeIterator() {
            loops.append(loop)
            loopStats[ObjectIdentifier(loop)] = try loop.submit { NIOLoopBound(LoopStats(), eventLoop: loop) }.wait()
        }
    }

    deinit {
        try? group.syncShutdownGracefully()
    }

    private func stats(for loop: EventLoop) -> NIOLoopBound<LoopStats> {
        loopStats[ObjectIdentifier(loop)]!
    }

    /// SIGTERM / SIGINT end the hold (idle) or the run early; figures are reported either way.
    private func installSignals() {
        for number in [SIGTERM, SIGINT] {
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { [stop] in stop.signal() }
            source.resume()
            signalSources.append(source)
        }
    }

    /// Sleeps until the monotonic time `nanos`, or until a signal; false on a signal.
    private func sleep(until nanos: UInt64) -> Bool {
        let now = monotonicNanos()
        guard nanos > now else { return true }
        if stop.wait(timeout: .now() + .nanoseconds(Int(nanos - now))) == .success {
            stop.signal()  // keep it signalled for later waits
            return false
        }
        return true
    }

    public func run() throws -> BenchReport {
        installSignals()
        ProcessStats.raiseOpenFileLimit()
        let cpuAtStart = ProcessStats.selfCPUSeconds()
        let count = options.idle ?? options.clients
        let connectStart = monotonicNanos()
        connectAll(count: count)
        let connectSeconds = Double(monotonicNanos() - connectStart) / 1e9
        var report = try gather(count: count)
        report.connectSeconds = connectSeconds
        log("# \(shared.connected.load()) of \(count) connected, \(shared.joined.load()) joined in \(String(format: "%.1f", connectSeconds)) s")
        guard shared.joined.load() > 0 else {
            shared.markEnding()
            throw BenchError.noConnections("no client could connect and join (failed: \(shared.failed.load()), connect errors: \(report.connectErrors))")
        }

        if options.idle != nil {
            onIdleReady(report)
            if let hold = options.idleHold {
                _ = sleep(until: monotonicNanos() + UInt64(hold * 1e9))
            } else {
                stop.wait()
            }
            shared.markEnding()
            report = try gather(count: count)
            report.connectSeconds = connectSeconds
            report.clientCPUTotal = ProcessStats.selfCPUSeconds() - cpuAtStart
            return report
        }

        // Senders start 100 ms from now, on every loop at once.
        let start = monotonicNanos() + 100_000_000
        let schedule = BenchSchedule(
            start: start,
            measureStart: start + UInt64(options.warmup * 1e9),
            measureEnd: start + UInt64((options.warmup + options.duration) * 1e9)
        )
        for loop in loops {
            let stats = self.stats(for: loop)
            try loop.submit {
                let stats = stats.value
                stats.schedule = schedule
                for connection in stats.connections { connection.startSending(schedule) }
            }.wait()
        }
        log("# sending: warmup \(options.warmup) s, measuring \(options.duration) s, rate \(options.rate == 0 ? "max (window \(options.window))" : "\(options.rate)/s per sender")")

        var interrupted = !sleep(until: schedule.measureStart)
        let serverCPUStart = ProcessStats.cpuSeconds(pids: options.serverPIDs)
        let clientCPUStart = ProcessStats.selfCPUSeconds()
        let disconnectsAtStart = shared.disconnects.load()
        // Markers for a harness that samples server counters around the same window.
        if !interrupted { log("# window open") }
        if !interrupted { interrupted = !sleep(until: schedule.measureEnd) }
        let measuredEnd = min(monotonicNanos(), schedule.measureEnd)
        let serverCPUEnd = ProcessStats.cpuSeconds(pids: options.serverPIDs)
        let clientCPUEnd = ProcessStats.selfCPUSeconds()
        log("# window closed")
        if !interrupted { _ = sleep(until: schedule.measureEnd + UInt64(options.drain * 1e9)) }
        shared.markEnding()

        report = try gather(count: count)
        report.connectSeconds = connectSeconds
        report.measuredSeconds = measuredEnd > schedule.measureStart ? Double(measuredEnd - schedule.measureStart) / 1e9 : 0
        report.clientCPU = clientCPUEnd - clientCPUStart
        report.clientCPUTotal = clientCPUEnd - cpuAtStart
        report.disconnectsInWindow = shared.disconnects.load() - disconnectsAtStart
        if let a = serverCPUStart, let b = serverCPUEnd { report.serverCPU = b - a }
        report.interrupted = interrupted
        disconnectAll()
        return report
    }

    /// After a sending run: every client disconnects explicitly (`41`), as a user leaving does,
    /// and the runner waits (at most `timeout` seconds) until every connection is closed. Idle
    /// mode does not: its connections are dropped when the process exits (with recovery on, the
    /// server holds those sessions: what bench/run.py's recovery memory figure measures).
    private func disconnectAll(timeout: Double = 5) {
        var closes: [EventLoopFuture<Void>] = []
        for loop in loops {
            let stats = self.stats(for: loop)
            closes.append(loop.flatSubmit {
                EventLoopFuture.andAllComplete(stats.value.connections.compactMap { $0.disconnect() }, on: loop)
            })
        }
        let done = DispatchSemaphore(value: 0)
        EventLoopFuture.andAllComplete(closes, on: loops[0]).whenComplete { _ in done.signal() }
        if done.wait(timeout: .now() + timeout) == .timedOut {
            log("# disconnect: not every connection closed within \(timeout) s")
        }
    }

    /// Starts `count` connections at `--connect-rate`, at most `maxPendingConnects` unfinished at
    /// once, and waits until every one is joined or has failed (or the connect timeout).
    private func connectAll(count: Int) {
        let addresses: [SocketAddress]
        do {
            addresses = try options.targets.map { try SocketAddress.makeAddressResolvingHost($0.host, port: $0.port) }
        } catch {
            log("# cannot resolve targets: \(error)")
            return
        }
        let t0 = monotonicNanos()
        var lastProgress = t0
        for i in 0..<count {
            if options.connectRate > 0 {
                if !sleep(until: t0 + UInt64(Double(i) / options.connectRate * 1e9)) { return }
            }
            while shared.pending.load() >= options.maxPendingConnects {
                usleep(500)
                if monotonicNanos() - lastProgress > UInt64(options.connectTimeout * 1e9) {
                    log("# connect: no progress for \(options.connectTimeout) s, giving up at \(i) of \(count)")
                    return
                }
            }
            lastProgress = monotonicNanos()
            // Clients of one room alternate between targets, so every room spans the nodes.
            let target = (i / options.rooms) % addresses.count
            connect(index: i, room: i % options.rooms, address: addresses[target], host: options.targets[target].host)
        }
        // Wait for the joins (or failures).
        var lastDone = -1
        lastProgress = monotonicNanos()
        while true {
            let done = shared.joined.load() + shared.failed.load() + shared.disconnects.load()
            if done >= count { return }
            if done != lastDone {
                lastDone = done
                lastProgress = monotonicNanos()
            } else if monotonicNanos() - lastProgress > UInt64(options.connectTimeout * 1e9) {
                log("# connect: \(count - done) clients neither joined nor failed after \(options.connectTimeout) s")
                logStragglers()
                return
            }
            if !sleep(until: monotonicNanos() + 2_000_000) { return }
        }
    }

    /// Names the clients stuck before their join echo (what to look for in the server logs).
    private func logStragglers() {
        var lines: [String] = []
        for loop in loops {
            let stats = self.stats(for: loop)
            let options = self.options
            let part = try? loop.submit { () -> [String] in
                stats.value.connections.filter { $0.state != .joined && $0.state != .closed }.prefix(20).map {
                    "\(String(decoding: $0.username, as: UTF8.self)) in room \(options.roomPrefix)\($0.room) on \(options.targets[($0.index / options.rooms) % options.targets.count]): \($0.state)"
                }
            }.wait()
            lines += part ?? []
        }
        for line in lines.prefix(20) { log("#   not joined: \(line)") }
    }

    private func connect(index: Int, room: Int, address: SocketAddress, host: String) {
        let loop = group.next()
        let stats = self.stats(for: loop)
        let shared = self.shared
        let roomName = options.roomPrefix + String(room)
        let uri = "/socket.io/?EIO=4&transport=websocket&roomid=" + percentEncode(roomName)
        let hostHeader = "\(host):\(address.port ?? 0)"
        shared.pending.add(1)
        let startedAt = monotonicNanos()
        let bootstrap = ClientBootstrap(group: loop)
            .channelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
            .connectTimeout(.seconds(Int64(max(options.connectTimeout, 1))))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let stats = stats.value
                    let connection = BenchConnection(index: index, room: room, shared: shared, stats: stats, connectStartedAt: startedAt)
                    stats.connections.append(connection)
                    let bound = NIOLoopBound(connection, eventLoop: channel.eventLoop)
                    channel.closeFuture.whenComplete { _ in bound.value.channelClosed() }
                    let request = UpgradeRequestHandler(host: hostHeader, uri: uri, stats: stats)
                    let boundRequest = NIOLoopBound(request, eventLoop: channel.eventLoop)
                    let upgrader = NIOWebSocketClientUpgrader(
                        requestKey: "dGhlIHNhbXBsZSBub25jZQ==",
                        maxFrameSize: 1 << 20,
                        automaticErrorHandling: false,
                        upgradePipelineHandler: { channel, _ in
                            channel.eventLoop.makeCompletedFuture {
                                // The connection parses and writes frames itself (leaner):
                                // the codec the upgrader just put in is bypassed.
                                let ops = channel.pipeline.syncOperations
                                let decoder = try ops.handler(type: ByteToMessageHandler<WebSocketFrameDecoder>.self)
                                let encoder = try ops.handler(type: WebSocketFrameEncoder.self)
                                // Before the encoder: our writes (ready-made frames) skip it.
                                try ops.addHandler(bound.value, position: .before(encoder))
                                ops.removeHandler(decoder, promise: nil)
                            }
                        }
                    )
                    let config: NIOHTTPClientUpgradeConfiguration = (
                        upgraders: [upgrader],
                        completionHandler: { context in
                            context.pipeline.syncOperations.removeHandler(boundRequest.value, promise: nil)
                        }
                    )
                    try channel.pipeline.syncOperations.addHTTPClientHandlers(leftOverBytesStrategy: .forwardBytes, withClientUpgrade: config)
                    try channel.pipeline.syncOperations.addHandler(request)
                }
            }
        bootstrap.connect(to: address).whenFailure { _ in
            // No channel was made active: the close future accounting above never ran for it
            // if the initializer did not run; count it here in that case only.
            loop.execute {
                if !stats.value.connections.contains(where: { $0.index == index }) {
                    shared.failed.add(1)
                    shared.pending.add(-1)
                }
            }
        }
    }

    private func percentEncode(_ s: String) -> String {
        var out = ""
        for b in s.utf8 {
            switch b {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                 UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: "~"):
                out.unicodeScalars.append(Unicode.Scalar(b))
            default:
                out += String(format: "%%%02X", b)
            }
        }
        return out
    }

    /// Every loop's counters, merged. Runs on each loop in turn.
    private func gather(count: Int) throws -> BenchReport {
        var report = BenchReport(options: options, clients: count)
        for loop in loops {
            let stats = self.stats(for: loop)
            let part = try loop.submit { () -> LoopResult in
                let stats = stats.value
                var snap = ConnectionSnapshot()
                for c in stats.connections { snap = snap + c.snapshot() }
                return LoopResult(
                    snapshot: snap, latency: stats.latency, connectTimes: stats.connectTimes,
                    framesIn: stats.framesIn, sayFrames: stats.sayFrames, windowDeliveries: stats.windowDeliveries,
                    foreignSays: stats.foreignSays, unexpectedDeliveries: stats.unexpectedDeliveries, errorEvents: stats.errorEvents, pingsAnswered: stats.pingsAnswered,
                    connectErrors: stats.connectErrors
                )
            }.wait()
            report.merge(part)
        }
        report.connected = shared.connected.load()
        report.joined = shared.joined.load()
        report.failed = shared.failed.load()
        report.disconnects = shared.disconnects.load()
        return report
    }
}

struct LoopResult: Sendable {
    var snapshot: ConnectionSnapshot
    var latency: Histogram<UInt64>
    var connectTimes: Histogram<UInt64>
    var framesIn: Int
    var sayFrames: Int
    var windowDeliveries: Int
    var foreignSays: Int
    var unexpectedDeliveries: Int
    var errorEvents: Int
    var pingsAnswered: Int
    var connectErrors: Int
}
