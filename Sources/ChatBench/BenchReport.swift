import Foundation
import Histogram
#if canImport(Glibc)
import Glibc
#endif

/// The figures of one bench run: a readable table and one JSON line.
public struct BenchReport: Sendable {
    public let options: BenchOptions
    public let clients: Int
    public var connected = 0
    public var joined = 0
    public var failed = 0
    public var disconnects = 0
    public var disconnectsInWindow = 0
    public var connectErrors = 0
    public var connectSeconds = 0.0
    public var measuredSeconds = 0.0
    public var sent: UInt64 = 0
    public var sentTotal: UInt64 = 0
    public var expected: UInt64 = 0
    /// Distinct measured deliveries received (each say counted once per receiver).
    public var received: UInt64 = 0
    public var duplicated: UInt64 = 0
    public var reordered: UInt64 = 0
    public var stalls = 0
    public var framesIn = 0
    public var sayFrames = 0
    public var windowDeliveries = 0
    public var foreignSays = 0
    public var unexpectedDeliveries = 0
    public var errorEvents = 0
    public var pingsAnswered = 0
    public var clientCPU = 0.0
    public var clientCPUTotal = 0.0
    public var serverCPU: Double?
    public var interrupted = false
    var latency = Histogram<UInt64>(lowestDiscernibleValue: 1, highestTrackableValue: 3_600_000_000, numberOfSignificantValueDigits: .three)
    var connectTimes = Histogram<UInt64>(lowestDiscernibleValue: 1, highestTrackableValue: 3_600_000_000, numberOfSignificantValueDigits: .three)

    init(options: BenchOptions, clients: Int) {
        self.options = options
        self.clients = clients
    }

    mutating func merge(_ part: LoopResult) {
        received += part.snapshot.received
        duplicated += part.snapshot.duplicated
        reordered += part.snapshot.reordered
        sent += part.snapshot.sent
        sentTotal += part.snapshot.sentTotal
        expected += part.snapshot.expected
        stalls += part.snapshot.stalls
        latency.add(part.latency)
        connectTimes.add(part.connectTimes)
        framesIn += part.framesIn
        sayFrames += part.sayFrames
        windowDeliveries += part.windowDeliveries
        foreignSays += part.foreignSays
        unexpectedDeliveries += part.unexpectedDeliveries
        errorEvents += part.errorEvents
        pingsAnswered += part.pingsAnswered
        connectErrors += part.connectErrors
    }

    public var lost: UInt64 { expected > received ? expected - received : 0 }
    /// Deliveries that arrived inside the measured window, per second.
    public var deliveriesPerSecond: Double { measuredSeconds > 0 ? Double(windowDeliveries) / measuredSeconds : 0 }
    public var serverCPUPerDeliveryMicros: Double? {
        guard let serverCPU, windowDeliveries > 0 else { return nil }
        return serverCPU / Double(windowDeliveries) * 1e6
    }

    private func ms(_ h: Histogram<UInt64>, _ percentile: Double) -> Double {
        h.totalCount == 0 ? 0 : Double(h.valueAtPercentile(percentile)) / 1000
    }
    private func maxMs(_ h: Histogram<UInt64>) -> Double { h.totalCount == 0 ? 0 : Double(h.max) / 1000 }

    public var latencyP50: Double { ms(latency, 50) }
    public var latencyP90: Double { ms(latency, 90) }
    public var latencyP99: Double { ms(latency, 99) }
    public var latencyP999: Double { ms(latency, 99.9) }
    public var latencyMax: Double { maxMs(latency) }
    public var connectP50: Double { ms(connectTimes, 50) }
    public var connectP99: Double { ms(connectTimes, 99) }

    /// One line of JSON, keys in a fixed order.
    public var json: String {
        var fields: [(String, String)] = []
        func add(_ k: String, _ v: Int) { fields.append((k, String(v))) }
        func add(_ k: String, _ v: UInt64) { fields.append((k, String(v))) }
        func add(_ k: String, _ v: Double, _ digits: Int = 3) {
            fields.append((k, v.isFinite ? String(format: "%.\(digits)f", v) : "null"))
        }
        func add(_ k: String, _ v: String) { fields.append((k, "\"\(v)\"")) }
        fields.append(("mode", options.idle != nil ? "\"idle\"" : "\"chat\""))
        add("targets", options.targets.map(\.description).joined(separator: ","))
        add("clients", clients)
        if options.idle == nil {
            add("rooms", options.rooms)
            add("senders", options.senders)
            add("rate", options.rate, 1)
            add("window", options.window)
            add("payload", options.payload)
            add("warmup_s", options.warmup, 1)
            add("duration_s", options.duration, 1)
        }
        add("connected", connected)
        add("joined", joined)
        add("failed", failed)
        add("connect_errors", connectErrors)
        add("disconnects", disconnects)
        add("connect_s", connectSeconds)
        add("connect_p50_ms", connectP50)
        add("connect_p99_ms", connectP99)
        if options.idle == nil {
            add("sent", sent)
            add("expected", expected)
            add("received", received)
            add("lost", lost)
            add("duplicated", duplicated)
            add("reordered", reordered)
            add("measured_s", measuredSeconds)
            add("window_deliveries", windowDeliveries)
            add("deliveries_per_s", deliveriesPerSecond, 1)
            add("latency_p50_ms", latencyP50)
            add("latency_p90_ms", latencyP90)
            add("latency_p99_ms", latencyP99)
            add("latency_p999_ms", latencyP999)
            add("latency_max_ms", latencyMax)
            add("error_events", errorEvents)
            add("foreign_says", foreignSays)
            add("unexpected_deliveries", unexpectedDeliveries)
            add("window_stalls", stalls)
            add("client_cpu_s", clientCPU)
        }
        add("client_cpu_total_s", clientCPUTotal)
        add("pings_answered", pingsAnswered)
        if let serverCPU {
            add("server_cpu_s", serverCPU)
            if let per = serverCPUPerDeliveryMicros { add("server_cpu_us_per_delivery", per) }
        }
        if interrupted { fields.append(("interrupted", "true")) }
        return "{" + fields.map { "\"\($0.0)\":\($0.1)" }.joined(separator: ",") + "}"
    }

    /// The readable table.
    public var table: String {
        func f(_ v: Double, _ d: Int = 2) -> String { String(format: "%.\(d)f", v) }
        var rows: [(String, String)] = []
        rows.append(("targets", options.targets.map(\.description).joined(separator: ", ")))
        rows.append(("clients connected / joined", "\(connected) / \(joined) of \(clients) (failed \(failed), disconnects \(disconnects))"))
        rows.append(("connect p50 / p99", "\(f(connectP50)) / \(f(connectP99)) ms (all in \(f(connectSeconds, 1)) s)"))
        if options.idle == nil {
            let rate = options.rate == 0 ? "max, window \(options.window)" : "\(f(options.rate, 1))/s per sender"
            rows.append(("scenario", "\(options.rooms) rooms, \(options.senders) senders, \(rate), \(options.payload)-byte text"))
            rows.append(("measured", "\(f(measuredSeconds, 1)) s after \(f(options.warmup, 1)) s warmup"))
            rows.append(("says sent", "\(sent)"))
            rows.append(("deliveries expected / received", "\(expected) / \(received)"))
            rows.append(("lost / duplicated / reordered", "\(lost) / \(duplicated) / \(reordered)"))
            rows.append(("deliveries/s", f(deliveriesPerSecond, 0)))
            rows.append(("latency p50 / p90 / p99", "\(f(latencyP50, 3)) / \(f(latencyP90, 3)) / \(f(latencyP99, 3)) ms"))
            rows.append(("latency p99.9 / max", "\(f(latencyP999, 3)) / \(f(latencyMax, 3)) ms"))
            if errorEvents > 0 || foreignSays > 0 || stalls > 0 || unexpectedDeliveries > 0 {
                rows.append(("errors / foreign / unexpected / stalls", "\(errorEvents) / \(foreignSays) / \(unexpectedDeliveries) / \(stalls)"))
            }
            rows.append(("client CPU (window / total)", "\(f(clientCPU)) / \(f(clientCPUTotal)) s"))
        }
        if let serverCPU {
            var v = "\(f(serverCPU)) s"
            if let per = serverCPUPerDeliveryMicros { v += " (\(f(per, 3)) µs per delivery)" }
            rows.append(("server CPU in window", v))
        }
        let width = rows.map(\.0.count).max() ?? 0
        return rows.map { $0.0.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + $0.1 }.joined(separator: "\n")
    }
}
