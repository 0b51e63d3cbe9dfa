#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import ClusterConfig
import Logging
import NIOCore
import NIOPosix

/// Asks each seed of a `[redis] url` whether a node could use it, for `chatmesh check-config
/// --connect`: it connects as the node does (`RedisDialer`, TLS and AUTH from the url), sends
/// the setup commands itself (so a refused AUTH is told apart from a lost connection), then
/// `CLUSTER SLOTS` and `CLUSTER INFO`, and judges the replies against the url: a cluster url
/// needs a cluster node with a slot map and `cluster_state:ok`; a single-server url is told
/// when its server is a cluster node. Nothing is written to Redis.
// @unchecked: every var is touched only on `eventLoop` (the link's and the deadline's).
public final class RedisSeedProbe: RedisLinkOwner, @unchecked Sendable {
    /// What one seed is good for, as one line of check-config's output.
    public struct Report: Sendable, Equatable, CustomStringConvertible {
        public enum Verdict: String, Sendable {
            /// A node can use the seed as the url says.
            case ok
            /// Usable, but probably not what was meant (a cluster node behind `redis://`, slots
            /// without a shard).
            case warning
            /// A node cannot use the seed: it would log the same reason and keep retrying.
            case unusable
        }

        public var seed: HostPort
        public var verdict: Verdict
        /// What was found and, when something is wrong, what to change.
        public var finding: String

        public var description: String { "redis seed \(seed): \(verdict.rawValue): \(finding)" }
    }

    /// How long one seed may take by default: longer than a TLS handshake may
    /// (`RedisLink.tlsHandshakeLimit`), so a plaintext port behind rediss:// is named as such.
    public static let defaultTimeout = RedisLink.tlsHandshakeLimit + .seconds(1)

    /// Probes every seed of `url` at once and waits for all of them (at most `timeout`, plus
    /// the close). For a command line: it blocks the calling thread on its own event loop.
    /// - Throws: the `[redis]` TLS file that cannot be used, before anything is dialed.
    public static func check(url: RedisURL, tls: RedisTLSSettings?, timeout: TimeAmount = defaultTimeout)
        throws(RedisTLSSetupError) -> [Report] {
        let tlsClient = try url.tls ? RedisTLSClient(settings: tls ?? RedisTLSSettings(), host: url.host) : nil
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { try? group.syncShutdownGracefully() }
        do {
            return try probe(url: url, tls: tlsClient, timeout: timeout, eventLoop: group.next()).wait()
        } catch {
            // Not expected (every outcome of a probe is a report), but never "no seed, all fine".
            return url.seeds.map { Report(seed: $0, verdict: .unusable, finding: "not probed: \(error)") }
        }
    }

    /// One report per seed, in the url's order; callable from any thread (the probes run on
    /// `eventLoop`).
    static func probe(url: RedisURL, tls: RedisTLSClient?, timeout: TimeAmount,
                      eventLoop: any EventLoop) -> EventLoopFuture<[Report]> {
        eventLoop.flatSubmit {
            let probes = url.seeds.map { seed in
                probe(seed, url: url, tls: tls, timeout: timeout, eventLoop: eventLoop)
            }
            return EventLoopFuture.whenAllSucceed(probes, on: eventLoop)
        }
    }

    private static func probe(_ seed: HostPort, url: RedisURL, tls: RedisTLSClient?, timeout: TimeAmount,
                              eventLoop: any EventLoop) -> EventLoopFuture<Report> {
        let probe = RedisSeedProbe(seed: seed, url: url, eventLoop: eventLoop,
                                   presentsClientCertificate: tls?.presentsClientCertificate ?? false)
        // No setup in the link: the probe sends AUTH / SELECT itself and reads their replies.
        let link = RedisLink(role: .query, owner: probe, setup: [], overTLS: tls != nil, address: seed)
        probe.link = link
        probe.deadline = eventLoop.assumeIsolated().scheduleTask(in: timeout) {
            probe.finish(.unusable, "no reply within \(timeout.nanoseconds / 1_000_000) ms (is it a Redis port? "
                + (url.tls ? "rediss:// needs the TLS port)" : "a TLS-only port needs rediss://)"))
        }
        RedisDialer.dial(seed, tls: tls, link: NIOLoopBound(link, eventLoop: eventLoop), on: eventLoop).whenComplete { result in
            switch result {
            case .failure(let error):
                probe.finish(.unusable, "unreachable: \(Self.describeConnectError(error))")
            case .success(let channel):
                if probe.finished { channel.close(promise: nil) }
                // The link reports to the probe (unowned) until its channel is gone.
                channel.closeFuture.whenComplete { _ in eventLoop.execute { _ = probe } }
            }
        }
        return probe.promise.futureResult
    }

    let logger = Logger(label: "chatmesh.redis-seed-probe", factory: { _ in SwiftLogNoOpLogHandler() })
    private let seed: HostPort
    private let url: RedisURL
    private let setup: [[RESPArgument]]
    private let presentsClientCertificate: Bool
    private let promise: EventLoopPromise<Report>
    private var link: RedisLink?
    private var deadline: Scheduled<Void>?
    private var replies: [RESPValue] = []
    private var finished = false

    private init(seed: HostPort, url: RedisURL, eventLoop: any EventLoop, presentsClientCertificate: Bool) {
        self.seed = seed
        self.url = url
        self.setup = RedisDialer.setupCommands(for: url)
        self.presentsClientCertificate = presentsClientCertificate
        self.promise = eventLoop.makePromise()
    }

    private func finish(_ verdict: Report.Verdict, _ finding: String) {
        guard !finished else { return }
        finished = true
        deadline?.cancel()
        link?.channel?.close(promise: nil)
        link = nil
        promise.succeed(Report(seed: seed, verdict: verdict, finding: finding))
    }

    // MARK: RedisLinkOwner

    func linkReady(_ link: RedisLink) {
        for command in setup { link.send(command, flush: false) }
        link.send(["CLUSTER", "SLOTS"], flush: false)
        link.send(["CLUSTER", "INFO"])
    }

    func received(_ value: RESPValue, on link: RedisLink) {
        replies.append(value)
        if replies.count <= setup.count {
            let command = setup[replies.count - 1]
            guard case .simpleString("OK") = value else { return refused(command, value) }
        } else if replies.count == setup.count + 2 {
            judge(slots: replies[setup.count], info: value)
        }
    }

    func linkClosed(_ link: RedisLink) {
        finish(.unusable, "the server closed the connection before answering")
    }

    func heard(from link: RedisLink) {}

    func linkReset(_ link: RedisLink, reason: String) {
        finish(.unusable, reason)
    }

    func tlsFailure(for error: any Error, on link: RedisLink, duringHandshake: Bool) -> RedisTLSFailure? {
        RedisTLSFailure.classify(error, host: seed.host, duringHandshake: duringHandshake,
                                 presentsClientCertificate: presentsClientCertificate)
    }

    func tlsFailed(_ failure: RedisTLSFailure, on link: RedisLink, detail: String?) {
        finish(.unusable, "TLS handshake failed: \(failure.message)")
    }

    // MARK: Judging the replies

    private func refused(_ command: [RESPArgument], _ reply: RESPValue) {
        let text = Self.replyText(reply)
        guard case .string(let name) = command.first, name == "AUTH" else {
            // SELECT: a cluster node has only db 0, a single server may have fewer dbs.
            let shown = command.map { if case .string(let part) = $0 { part } else { "..." } }.joined(separator: " ")
            return finish(.unusable, "\(shown) refused (\(text)): check the /db of [redis] url")
        }
        finish(.unusable, "AUTH refused (\(text)): check the user and password in [redis] url")
    }

    private func judge(slots: RESPValue, info: RESPValue) {
        if case .error(let text) = slots {
            return judgeSlotsError(text)
        }
        let topology: RedisClusterTopology
        switch RedisClusterTopology.parse(clusterSlots: slots, askedHost: seed.host) {
        case .success(let parsed): topology = parsed
        case .failure(let error):
            guard url.cluster else { return finish(.warning, Self.clusterNodeBehindSingleURL(shards: nil)) }
            return finish(.unusable, "in cluster mode, but its slot map is unusable: \(error)")
        }
        guard url.cluster else { return finish(.warning, Self.clusterNodeBehindSingleURL(shards: topology.shards.count)) }
        let covered = topology.shards.reduce(0) { sum, shard in sum + shard.slots.reduce(0) { $0 + $1.count } }
        let shards = "\(topology.shards.count) shard\(topology.shards.count == 1 ? "" : "s")"
        let coverage = topology.coversEverySlot ? "covering every slot" : "covering \(covered) of \(RedisHashSlot.count) slots"
        if let state = Self.clusterState(info), state != "ok" {
            return finish(.unusable, "CLUSTERDOWN: in cluster mode, \(shards) \(coverage), but cluster_state:\(state); "
                + "a node keeps its says waiting until the cluster is ok (a shard without a primary? slots unassigned?)")
        }
        if topology.coversEverySlot {
            finish(.ok, "in cluster mode, \(shards) \(coverage)")
        } else {
            finish(.warning, "in cluster mode, \(shards) \(coverage): says for rooms in the other slots wait until a shard serves them")
        }
    }

    private func judgeSlotsError(_ text: String) {
        if text.hasPrefix("NOAUTH") {
            return finish(.unusable, "AUTH required (\(Self.clip(text))): put the password in [redis] url (redis://:PASSWORD@host:port)")
        }
        switch (RedisClusterErrorKind.classify(text), url.cluster) {
        case (.clusterSupportDisabled, true):
            finish(.unusable, "not in cluster mode (\(Self.clip(text))): use redis:// for a single server")
        case (.clusterSupportDisabled, false):
            finish(.ok, "a single server (not in cluster mode)")
        case (.clusterDown, _):
            finish(.unusable, "CLUSTERDOWN (\(Self.clip(text)))")
        case (_, true):
            finish(.unusable, "CLUSTER SLOTS refused (\(Self.clip(text))): a node needs it to read the slot map "
                + "(an ACL without the cluster commands?)")
        case (_, false):
            finish(.ok, "reachable (whether it is a cluster node is unknown: CLUSTER SLOTS answered \(Self.clip(text)))")
        }
    }

    private static func clusterNodeBehindSingleURL(shards: Int?) -> String {
        let size = shards.map { " of \($0) shard\($0 == 1 ? "" : "s")" } ?? ""
        return "a Redis Cluster node\(size) behind a single-server url: use redis+cluster:// (with mode = classic "
            + "or sharded) so the node follows failovers and, sharded, spreads rooms over the shards"
    }

    /// `cluster_state` from a `CLUSTER INFO` reply (a bulk string of `key:value` lines).
    static func clusterState(_ info: RESPValue) -> String? {
        guard let text = info.string else { return nil }
        for line in text.split(whereSeparator: \.isNewline) where line.hasPrefix("cluster_state:") {
            return String(line.dropFirst("cluster_state:".count).filter { !$0.isWhitespace })
        }
        return nil
    }

    private static func replyText(_ value: RESPValue) -> String {
        if case .error(let text) = value { return clip(text) }
        return clip(RedisLink.describe(value))
    }

    /// At most 80 characters of a server's text, unquoted (it sits in parentheses).
    private static func clip(_ text: String) -> String {
        text.count <= 80 ? text : "\(text.prefix(80))..."
    }

    /// NIO's connect error lists every address tried; the first one's error says why.
    static func describeConnectError(_ error: any Error) -> String {
        if let connect = error as? NIOConnectionError, let first = connect.connectionErrors.first {
            if let io = first.error as? IOError { return String(cString: strerror(io.errnoCode)) }
            return "\(first.error)"
        }
        if let connect = error as? NIOConnectionError, connect.dnsAError != nil || connect.dnsAAAAError != nil {
            return "cannot resolve \(connect.host)"
        }
        return "\(error)"
    }
}
