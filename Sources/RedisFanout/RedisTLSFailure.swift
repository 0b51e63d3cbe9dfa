import NIOCore
import NIOSSL

/// Why a `rediss://` connection failed, in words an operator can act on (what to check in
/// cluster.conf or on the server), and as the `reason` label of
/// `chatmesh_redis_tls_failures_total`. NIOSSL reports BoringSSL's error names (e.g.
/// `CERTIFICATE_VERIFY_FAILED`); they are matched in the error's text because BoringSSL's
/// error stack has no public structure.
struct RedisTLSFailure: Equatable, Sendable {
    /// A metric label: short, stable, one of the static cases below.
    let reason: String
    /// What went wrong and what to check.
    let message: String

    static func certificateVerifyFailed() -> Self {
        Self(reason: "certificate_verify_failed",
             message: "certificate verify failed (is [redis] tls_ca the CA that signed the server's certificate, "
                 + "and is that certificate within its validity dates?)")
    }

    static func hostnameMismatch(host: String) -> Self {
        Self(reason: "hostname_mismatch",
             message: "the server's certificate does not name \(host) (its subjectAltName needs "
                 + "\(RedisTLSClient.isIPLiteral(host) ? "IP:" : "DNS:")\(host), the host of the rediss:// url)")
    }

    static func notTLS() -> Self {
        Self(reason: "not_tls",
             message: "the server did not answer in TLS (is the port a plaintext Redis port? "
                 + "rediss:// needs the port of redis-server's --tls-port)")
    }

    static func clientCertificateRequired() -> Self {
        Self(reason: "client_certificate_required",
             message: "the server requires a client certificate: set [redis] tls_cert and tls_key")
    }

    static func clientCertificateRefused() -> Self {
        Self(reason: "client_certificate_refused",
             message: "the server refused our client certificate (is [redis] tls_cert signed by the CA "
                 + "redis-server's tls-ca-cert-file names, and within its validity dates?)")
    }

    static func closedDuringHandshake() -> Self {
        Self(reason: "closed_during_handshake",
             message: "the server closed the connection during the TLS handshake (a plaintext port, "
                 + "or a server that refused our TLS version or certificate)")
    }

    static func handshakeTimeout(_ limit: TimeAmount) -> Self {
        Self(reason: "handshake_timeout",
             message: "no TLS handshake within \(limit.nanoseconds / 1_000_000) ms (is the port a plaintext "
                 + "Redis port? it waits for a command and never answers a TLS hello)")
    }

    static func other(_ detail: String) -> Self {
        Self(reason: "tls_error", message: "TLS error: \(detail)")
    }

    /// The failure `error` means on a TLS connection to `host`, or nil when it is not about
    /// TLS (e.g. a reset or a close after the handshake: the connection was lost, not refused).
    static func classify(_ error: any Error, host: String, duringHandshake: Bool, presentsClientCertificate: Bool) -> Self? {
        if let extra = error as? NIOSSLExtraError, extra == .failedToValidateHostname {
            return .hostnameMismatch(host: host)
        }
        let isTLSError = error is NIOSSLError || error is BoringSSLError || error is NIOSSLExtraError
        guard isTLSError else { return nil }
        return classify(text: "\(error)", host: host, duringHandshake: duringHandshake,
                        presentsClientCertificate: presentsClientCertificate)
    }

    /// The same, from the text of a NIOSSL error (`NIOSSLError.handshakeFailed(...)` with
    /// BoringSSL's error names in it).
    static func classify(text: String, host: String, duringHandshake: Bool, presentsClientCertificate: Bool) -> Self? {
        func has(_ name: String) -> Bool { text.contains(name) }
        if has("CERTIFICATE_VERIFY_FAILED") { return .certificateVerifyFailed() }
        if has("failedToValidateHostname") { return .hostnameMismatch(host: host) }
        // TLS 1.3 (alert 116): the client finishes its side of the handshake before the
        // server checks for a certificate, so this one may come after it.
        if has("CERTIFICATE_REQUIRED") { return .clientCertificateRequired() }
        if has("WRONG_VERSION_NUMBER") || has("HTTP_REQUEST") || has("PACKET_LENGTH_TOO_LONG")
            || has("RECORD_TOO_LARGE") || has("UNEXPECTED_RECORD") || has("WRONG_SSL_VERSION")
        {
            return .notTLS()
        }
        // Alerts a server sends about the certificate we presented (or did not).
        let certificateAlert = ["ALERT_UNKNOWN_CA", "ALERT_BAD_CERTIFICATE", "ALERT_CERTIFICATE_UNKNOWN",
                                "ALERT_CERTIFICATE_EXPIRED", "ALERT_DECRYPT_ERROR", "ALERT_ACCESS_DENIED",
                                "ALERT_CERTIFICATE_REVOKED", "ALERT_UNSUPPORTED_CERTIFICATE"].contains { has($0) }
        if certificateAlert {
            return presentsClientCertificate ? .clientCertificateRefused() : .clientCertificateRequired()
        }
        if has("ALERT_HANDSHAKE_FAILURE") && !presentsClientCertificate { return .clientCertificateRequired() }
        guard duringHandshake else { return nil }
        if has("uncleanShutdown") || has("EOF during handshake") || has("zeroReturn") || has("syscallError") {
            return .closedDuringHandshake()
        }
        return .other(text)
    }
}
