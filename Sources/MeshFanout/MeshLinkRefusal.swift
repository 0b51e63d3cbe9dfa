import NIOSSL

/// Why a mesh link is refused before (or while) it authenticates: the text for the log and the
/// peer's GOODBYE, and the `reason` label of `chatmesh_mesh_link_rejects_total`.
/// Raised inside the pipeline (as an error) by the transport sniffer; built from NIOSSL's
/// errors by `init?(error:)`, so every refusal reaches `PeerLinkHandler` the same way.
public struct MeshLinkRefusal: Error, Equatable, Sendable, CustomStringConvertible {
    public var reason: String
    public var metricReason: String

    public init(reason: String, metricReason: String) {
        self.reason = reason
        self.metricReason = metricReason
    }

    public var description: String { "\(metricReason): \(reason)" }

    public static let tlsRequired = MeshLinkRefusal(
        reason: "peer speaks plaintext mesh, but this mesh requires TLS ([mesh] tls = on)", metricReason: "tls_required")
    public static let tlsNotEnabled = MeshLinkRefusal(
        reason: "peer speaks TLS, but TLS is not enabled on this mesh ([mesh] tls = off)", metricReason: "tls_not_enabled")

    public static func nameMismatch(_ problem: String) -> MeshLinkRefusal {
        MeshLinkRefusal(reason: problem, metricReason: "tls_peer_name_mismatch")
    }

    /// The refusal a pipeline error stands for; nil for errors that are not a refusal (a reset,
    /// a ragged close after the link was up).
    public init?(error: any Error) {
        if let refusal = error as? MeshLinkRefusal {
            self = refusal
            return
        }
        guard let error = error as? NIOSSLError else { return nil }
        switch error {
        case .handshakeFailed(let cause):
            self.init(reason: "TLS handshake failed: \(Self.describe(cause))", metricReason: "tls_handshake_failed")
        case .noCertificateToValidate, .unableToValidateCertificate, .cannotMatchULabel, .cannotFindPeerIP:
            self.init(reason: "TLS handshake failed: \(error)", metricReason: "tls_handshake_failed")
        default:
            return nil
        }
    }

    /// BoringSSL's error stack says what went wrong (CERTIFICATE_VERIFY_FAILED,
    /// PEER_DID_NOT_RETURN_A_CERTIFICATE, WRONG_VERSION_NUMBER, ...): kept for the log.
    static func describe(_ error: BoringSSLError) -> String {
        switch error {
        case .sslError(let stack), .unknownError(let stack):
            return stack.isEmpty ? "\(error)" : stack.map { "\($0)" }.joined(separator: "; ")
        default:
            return "\(error)"
        }
    }
}
