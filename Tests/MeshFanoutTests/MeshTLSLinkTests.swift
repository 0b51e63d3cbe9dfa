import ChatCore
import ClusterConfig
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Testing
@testable import MeshFanout

/// Two real `MeshFanout`s on loopback sockets with `[mesh] tls = on`: the link comes up and
/// carries a PUB; an acceptor whose certificate names another node, or comes from another CA,
/// is refused by the dialer; a TLS node and a plaintext node refuse each other, each saying
/// which side has TLS. a1 dials a2 (the smaller name dials).
@Suite(.serialized) struct MeshTLSLinkTests {
    /// The "mesh link refused" lines a node logged: its `reject` label and its reason.
    final class RefusalLog: Sendable {
        // NIO's pthread lock: ThreadSanitizer does not see Synchronization.Mutex's futex.
        let entries = NIOLockedValueBox<[(reject: String, reason: String)]>([])
        var rejects: [String] { entries.withLockedValue { $0.map { $0.reject } } }
        var reasons: [String] { entries.withLockedValue { $0.map { $0.reason } } }
    }

    struct RefusalLogHandler: LogHandler {
        let sink: RefusalLog
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .info
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            guard event.message.description == "mesh link refused", let metadata = event.metadata else { return }
            sink.entries.withLockedValue { $0.append(("\(metadata["reject"] ?? "")", "\(metadata["reason"] ?? "")")) }
        }
    }

    final class Node {
        let mesh: MeshFanout
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let delivery = RecordingDelivery()
        let log = RefusalLog()

        /// `name` with its mesh on an ephemeral port; `peerPort`: where the other node listens
        /// (0 for the acceptor, which never dials).
        init(_ name: String, peerPort: Int, tls: MeshTLSSettings?) throws {
            let other = name == "a1" ? "a2" : "a1"
            var settings = MeshSettings()
            settings.tls = tls
            let config = ClusterConfig(secret: TestNode.secret, mesh: settings, nodes: [
                NodeEntry(name: name, listen: HostPort(host: "127.0.0.1", port: 1), mesh: HostPort(host: "127.0.0.1", port: 0)),
                NodeEntry(name: other, listen: HostPort(host: "127.0.0.1", port: 1), mesh: HostPort(host: "127.0.0.1", port: peerPort)),
            ])
            let log = self.log
            mesh = MeshFanout(config: config, localNode: config.node(named: name)!, eventLoop: group.next(),
                              logger: Logger(label: "mesh-tls-test", factory: { _ in RefusalLogHandler(sink: log) }))
            mesh.start(delivery: delivery)
            try mesh.start(FanoutStartContext())
        }

        var port: Int { mesh.boundAddress?.port ?? 0 }

        var delivered: [String] {
            get throws {
                let delivery = self.delivery
                return try mesh.eventLoop.submit { delivery.delivered }.wait()
            }
        }

        func stop() throws {
            try mesh.stop().wait()
            try group.syncShutdownGracefully()
        }
    }

    static let directory = try! TLSTestCertificates.directory()

    static func tls(cert: String = "%n") -> MeshTLSSettings {
        MeshTLSSettings(caFile: directory.appendingPathComponent("ca.pem").path,
                        certFile: directory.appendingPathComponent("\(cert).pem").path,
                        keyFile: directory.appendingPathComponent("\(cert)-key.pem").path)
    }

    /// Polls `condition` every 20 ms for up to `seconds`.
    func eventually(_ seconds: Double = 5, _ condition: () throws -> Bool) rethrows -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if try condition() { return true }
            Thread.sleep(forTimeInterval: 0.02)
        }
        return try condition()
    }

    /// a2 (acceptor) with `a2TLS`, a1 (dialer) with `a1TLS`; `body` runs while both are up.
    func withPair(a1TLS: MeshTLSSettings?, a2TLS: MeshTLSSettings?, _ body: (Node, Node) throws -> Void) throws {
        let a2 = try Node("a2", peerPort: 0, tls: a2TLS)
        defer { try? a2.stop() }
        let a1 = try Node("a1", peerPort: a2.port, tls: a1TLS)
        defer { try? a1.stop() }
        try body(a1, a2)
    }

    @Test func aTLSLinkComesUpAndCarriesPubs() throws {
        try withPair(a1TLS: Self.tls(), a2TLS: Self.tls()) { a1, a2 in
            #expect(eventually { a1.mesh.peerStatus().up == ["a2"] && a2.mesh.peerStatus().up == ["a1"] })
            a2.mesh.subscribe(room: "r")
            Thread.sleep(forTimeInterval: 0.2) // the SUB crosses before the say
            a1.mesh.publish(message("r", "over tls"))
            let arrived = try eventually { try a2.delivered == [delivered("r", "over tls")] }
            #expect(arrived)
            #expect(a1.log.rejects.isEmpty && a2.log.rejects.isEmpty)
        }
    }

    @Test func aDialerRefusesAnAcceptorWhoseCertificateNamesAnotherNode() throws {
        try withPair(a1TLS: Self.tls(), a2TLS: Self.tls(cert: "a2-naming-a3")) { a1, a2 in
            #expect(eventually { a1.log.rejects.contains("tls_peer_name_mismatch") })
            #expect(a1.log.reasons.contains("peer certificate names 'a3', not node 'a2'"))
            #expect(a1.mesh.peerStatus().up.isEmpty && a2.mesh.peerStatus().up.isEmpty)
        }
    }

    @Test func aDialerRefusesAnAcceptorCertifiedByAnotherCA() throws {
        try withPair(a1TLS: Self.tls(), a2TLS: Self.tls(cert: "a2-other-ca")) { a1, a2 in
            #expect(eventually { a1.log.rejects.contains("tls_handshake_failed") })
            #expect(a1.mesh.peerStatus().up.isEmpty && a2.mesh.peerStatus().up.isEmpty)
        }
    }

    @Test func aTLSNodeAndAPlaintextNodeRefuseEachOtherSayingWhy() throws {
        try withPair(a1TLS: Self.tls(), a2TLS: nil) { a1, a2 in
            #expect(eventually { a2.log.rejects.contains("tls_not_enabled") && a1.log.rejects.contains("tls_required") })
            #expect(a1.mesh.peerStatus().up.isEmpty && a2.mesh.peerStatus().up.isEmpty)
        }
    }

    @Test func aMissingKeyFileFailsTheSetupNamingTheFileAndLine() throws {
        var settings = Self.tls()
        settings.keyFile = "/nonexistent/%n-key.pem"
        settings.keyLine = 12
        #expect {
            try MeshTLSContexts(settings: settings, node: "a2")
        } throws: { error in
            "\(error)".hasPrefix("[mesh] tls_key = /nonexistent/a2-key.pem (cluster.conf line 12)")
        }
    }
}
