import ArgumentParser
import ChatBench
#if canImport(Glibc)
import Glibc
#endif

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Load-test chat servers with many WebSocket Socket.IO clients.",
        discussion: """
        Opens --clients WebSocket connections (Engine.IO v4 / Socket.IO v5) round robin over \
        --targets, each into room r<i mod --rooms>, joins them, and lets --senders of them say \
        --rate times a second (0: as fast as possible, --window says in flight each, counted by \
        the sender's own echo). Every say's text carries sender, sequence and send time; every \
        receiver counts lost, duplicated and reordered deliveries and records end-to-end latency. \
        Figures from --warmup seconds on, for --duration seconds, plus --drain seconds for late \
        deliveries. Prints a table and one JSON line (--json-only: just the line). \
        --idle N opens N connections, joins them, prints a line when all are up and holds them \
        (answering pings) until SIGTERM or --duration.
        """
    )

    @Option(help: "Servers, host:port[,host:port…]; clients go round robin.")
    var targets: String = "127.0.0.1:6001"
    @Option(help: "Client connections.")
    var clients: Int = 1000
    @Option(help: "Rooms the clients are spread over.")
    var rooms: Int = 10
    @Option(help: "Clients that say (spread over the rooms).")
    var senders: Int = 20
    @Option(help: "Says per second per sender; 0 = as fast as possible with --window in flight.")
    var rate: Double = 10
    @Option(help: "Unacknowledged says in flight per sender when --rate is 0.")
    var window: Int = 8
    @Option(help: "Measured seconds (idle mode: how long to hold; default until SIGTERM).")
    var duration: Double?
    @Option(help: "Seconds of sending before the measured window.")
    var warmup: Double = 2
    @Option(help: "Seconds after the senders stop during which deliveries still count.")
    var drain: Double = 1
    @Option(help: "Bytes of say text.")
    var payload: Int = 64
    @Option(name: .customLong("connect-rate"), help: "New connections per second (0 = unpaced).")
    var connectRate: Double = 2000
    @Option(name: .customLong("connect-timeout"), help: "Seconds without connect progress after which the bench goes on with the clients it has.")
    var connectTimeout: Double = 60
    @Option(help: "Client event-loop threads.")
    var threads: Int = 1
    @Option(help: "Open N connections, join, hold them until SIGTERM or --duration; no says.")
    var idle: Int?
    @Option(name: .customLong("server-pids"), help: "Comma-separated server pids whose CPU time (/proc) is sampled around the measured window.")
    var serverPIDs: String?
    @Option(name: .customLong("room-prefix"), help: "Room ids are this prefix plus a number.")
    var roomPrefix: String = "r"
    @Flag(name: .customLong("json-only"), help: "Print only the JSON line.")
    var jsonOnly = false

    func makeOptions() throws -> BenchOptions {
        var o = BenchOptions()
        o.targets = try BenchOptions.parseTargets(targets)
        o.clients = clients
        o.rooms = rooms
        o.senders = senders
        o.rate = rate
        o.window = window
        o.duration = duration ?? 10
        o.warmup = warmup
        o.drain = drain
        o.payload = payload
        o.connectRate = connectRate
        o.connectTimeout = connectTimeout
        o.threads = threads
        o.idle = idle
        o.idleHold = duration
        o.jsonOnly = jsonOnly
        o.roomPrefix = roomPrefix
        if let idle {
            o.clients = idle
            o.rooms = min(max(rooms, (idle + 9) / 10), idle)  // ~10 per room keeps the join storm small
            o.senders = 0
        }
        if let serverPIDs {
            o.serverPIDs = try serverPIDs.split(separator: ",").map {
                guard let pid = Int32($0.trimmingCharacters(in: .whitespaces)) else {
                    throw ValidationError("--server-pids: '\($0)' is not a pid")
                }
                return pid
            }
        }
        return o
    }

    func validate() throws {
        do {
            try makeOptions().validate()
        } catch let error as BenchError {
            throw ValidationError(error.description)
        }
    }

    func run() throws {
        let options = try makeOptions()
        let runner = try BenchRunner(options: options)
        let jsonOnly = self.jsonOnly
        runner.onIdleReady = { report in
            print("{\"idle_ready\":true,\"connected\":\(report.connected),\"joined\":\(report.joined),\"failed\":\(report.failed)}")
            // nil flushes every output stream: Glibc's `stdout` is a global var Swift 6 rejects.
            fflush(nil)
        }
        let report: BenchReport
        do {
            report = try runner.run()
        } catch let error as BenchError {
            throw ValidationError(error.description)
        }
        if !jsonOnly {
            print(report.table)
        }
        print(report.json)
        fflush(nil)
    }
}

import Foundation
