import NIOSSL

/// Which node a mesh peer's certificate names. NIOSSL has already checked the chain against
/// the cluster CA (no hostname rules); here the certificate's DNS subject alternative names
/// must include the node the link is for: the node we dialed, or the node the dialer claims
/// in its HELLO. Exact, case-sensitive names (node names are cluster.conf's), no wildcards: a
/// certificate for `a*` must not speak for every node.
public enum MeshPeerIdentity {
    /// The DNS names among `certificate`'s subject alternative names.
    public static func dnsNames(of certificate: NIOSSLCertificate) -> [String] {
        certificate._subjectAlternativeNames().compactMap { name in
            guard name.nameType == .dnsName else { return nil }
            return name.contents.withUnsafeBufferPointer { String(decoding: $0, as: UTF8.self) }
        }
    }

    /// nil when `names` (a certificate's DNS SANs) name `node`; otherwise why the link is refused.
    public static func problem(names: [String], node: String) -> String? {
        if names.contains(node) { return nil }
        let shown = names.isEmpty ? "no DNS name" : names.prefix(8).map { "'\($0.prefix(64))'" }.joined(separator: ", ")
        return "peer certificate names \(shown), not node '\(node.prefix(64))'"
    }

    /// The same for a certificate (nil: none presented, which a verified TLS link never has).
    public static func problem(certificate: NIOSSLCertificate?, node: String) -> String? {
        guard let certificate else { return "peer presented no certificate" }
        return problem(names: dnsNames(of: certificate), node: node)
    }
}
