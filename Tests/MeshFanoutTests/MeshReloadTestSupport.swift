import ChatCore
import ClusterConfig
#if canImport(Glibc)
import Glibc
#endif
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Testing
@testable import MeshFanout

/// Every line a node logged: its message and metadata, as text.
final class ReloadLog: Sendable {
    struct Entry: Sendable {
        var message: String
        var metadata: [String: String]
    }

    /// A pthread lock (NIO's), not `Synchronization.Mutex`: the node's loop logs while the test
    /// reads, and ThreadSanitizer sees through pthread locks but not Mutex's futex.
    let entries = NIOLockedValueBox<[Entry]>([])

    /// Entries with `message`, as their metadata.
    func lines(_ message: String) -> [[String: String]] {
        entries.withLockedValue { $0.filter { $0.message == message }.map(\.metadata) }
    }
}

struct ReloadLogHandler: LogHandler {
    let sink: ReloadLog
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .debug
    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let fields = (event.metadata ?? [:]).mapValues { "\($0)" }
        sink.entries.withLockedValue { $0.append(.init(message: event.message.description, metadata: fields)) }
    }
}

/// A node of a real mesh on loopback: a `MeshFanout` on its own one-thread loop, listening on a
/// socket bound before the configs are written (so every node's config can name every port,
/// and no port is picked twice), as systemd would hand one over.
final class ReloadNode {
    let name: String
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    let mesh: MeshFanout
    let delivery = RecordingDelivery()
    let log = ReloadLog()

    init(_ name: String, config: ClusterConfig, socket: CInt) throws {
        self.name = name
        let log = self.log
        mesh = MeshFanout(config: config, localNode: config.node(named: name)!, eventLoop: group.next(),
                          logger: Logger(label: "mesh-reload-test", factory: { _ in ReloadLogHandler(sink: log) }))
        mesh.start(delivery: delivery)
        try mesh.start(FanoutStartContext(inheritedMeshSocket: socket))
    }

    var up: [String] { mesh.peerStatus().up }

    /// What local members got, read on the mesh loop.
    var delivered: [String] {
        get throws {
            let delivery = self.delivery
            return try mesh.eventLoop.submit { delivery.delivered }.wait()
        }
    }

    /// Whether this node knows that `peer` has members in `room` (its SNAPSHOT or SUB arrived).
    func knowsInterest(of peer: String, in room: String) throws -> Bool {
        let mesh = self.mesh
        return try mesh.eventLoop.submit { mesh.peers[peer]?.interest.contains(room) ?? false }.wait()
    }

    /// Published on the mesh loop, where the test delivery records the node's own copy.
    func publish(_ room: String, _ text: String) {
        let mesh = self.mesh
        mesh.eventLoop.execute { mesh.publish(message(room, text)) }
    }

    func apply(_ config: ClusterConfig) throws -> MeshReloadReport {
        try mesh.apply(config).wait()
    }

    func stop() throws {
        try mesh.stop().wait()
        try group.syncShutdownGracefully()
    }
}

/// Three listening sockets on 127.0.0.1 and configs naming any subset of a1, a2, a3 with them.
struct ReloadCluster {
    static let names = ["a1", "a2", "a3"]
    let sockets: [String: CInt]
    let ports: [String: Int]
    var mesh = MeshSettings()

    init() throws {
        var sockets: [String: CInt] = [:], ports: [String: Int] = [:]
        for name in Self.names {
            let (socket, port) = try Self.listeningSocket()
            sockets[name] = socket
            ports[name] = port
        }
        self.sockets = sockets
        self.ports = ports
        // Quick retries, so a refused dial is tried again within the test's patience.
        mesh.reconnectMax = .milliseconds(300)
    }

    func config(_ names: [String], mesh: MeshSettings? = nil) -> ClusterConfig {
        ClusterConfig(secret: TestNode.secret, mesh: mesh ?? self.mesh, nodes: names.map { name in
            NodeEntry(name: name, listen: HostPort(host: "127.0.0.1", port: 1), mesh: HostPort(host: "127.0.0.1", port: ports[name]!))
        })
    }

    func node(_ name: String, knowing names: [String]) throws -> ReloadNode {
        try ReloadNode(name, config: config(names), socket: sockets[name]!)
    }

    /// A TCP socket bound to an ephemeral loopback port and listening.
    static func listeningSocket() throws -> (CInt, Int) {
        let socket = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard socket >= 0 else { throw SocketSetupError(step: "socket") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { generic in
                Glibc.bind(socket, generic, length) == 0 && Glibc.listen(socket, 64) == 0
                    && getsockname(socket, generic, &length) == 0
            }
        }
        guard bound else {
            close(socket)
            throw SocketSetupError(step: "bind/listen")
        }
        return (socket, Int(UInt16(bigEndian: address.sin_port)))
    }

    struct SocketSetupError: Error {
        var step: String
    }
}

/// Polls `condition` every 20 ms for up to `seconds`.
func eventuallyTrue(within seconds: Double = 5, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = NIODeadline.now() + .milliseconds(Int64(seconds * 1000))
    while NIODeadline.now() < deadline {
        if try condition() { return true }
        usleep(20_000)
    }
    return try condition()
}
