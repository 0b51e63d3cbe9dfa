import CLibCrypto

/// Makes X.509 certificates with libcrypto: a self-signed cluster CA and node certificates
/// it signs (ECDSA P-256 keys, SHA-256 signatures, X.509 v3).
public enum CertificateFactory {
    /// A subjectAltName entry.
    public enum AltName: Equatable, CustomStringConvertible {
        case dns(String)
        /// IPv4 or IPv6 text.
        case ip(String)

        public var description: String {
            switch self {
            case .dns(let name): return "DNS:\(name)"
            case .ip(let address): return "IP:\(address)"
            }
        }
    }

    /// A self-signed CA certificate for `key`, valid from 5 minutes ago (clock skew between
    /// hosts) for `days`.
    public static func makeCA(commonName: String, key: PrivateKey, days: Int,
                              notBeforeOffset: Int = -300) throws -> Certificate {
        try make(commonName: commonName, publicKey: key, issuer: nil, issuerKey: key, altNames: [],
                 isCA: true, notBeforeOffset: notBeforeOffset, notAfterOffset: days * 86_400)
    }

    /// A node certificate for `key`, signed by `ca` / `caKey`: usable as TLS server and client
    /// (mesh links are mutual). Offsets are seconds from now, so tests can make expired ones.
    public static func makeLeaf(commonName: String, altNames: [AltName], key: PrivateKey,
                                ca: Certificate, caKey: PrivateKey, days: Int,
                                notBeforeOffset: Int = -300, notAfterOffset: Int? = nil) throws -> Certificate {
        try make(commonName: commonName, publicKey: key, issuer: ca, issuerKey: caKey, altNames: altNames,
                 isCA: false, notBeforeOffset: notBeforeOffset, notAfterOffset: notAfterOffset ?? days * 86_400)
    }

    private static func make(commonName: String, publicKey: PrivateKey, issuer: Certificate?, issuerKey: PrivateKey,
                             altNames: [AltName], isCA: Bool, notBeforeOffset: Int, notAfterOffset: Int) throws -> Certificate {
        guard let x509 = X509_new() else { throw OpenSSLError.last("X509_new") }
        let certificate = Certificate(taking: x509)  // frees x509 on every exit
        guard X509_set_version(x509, 2) == 1 else { throw OpenSSLError.last("X509_set_version") }
        try setRandomSerial(x509)
        guard X509_gmtime_adj(X509_getm_notBefore(x509), notBeforeOffset) != nil,
              X509_gmtime_adj(X509_getm_notAfter(x509), notAfterOffset) != nil else {
            throw OpenSSLError.last("X509_gmtime_adj")
        }
        guard let name = X509_NAME_new() else { throw OpenSSLError.last("X509_NAME_new") }
        defer { X509_NAME_free(name) }
        for (field, value) in [("O", "chatmesh"), ("CN", commonName)] {
            guard X509_NAME_add_entry_by_txt(name, field, MBSTRING_UTF8, value, -1, -1, 0) == 1 else {
                throw OpenSSLError.last("X509_NAME_add_entry_by_txt")
            }
        }
        guard X509_set_subject_name(x509, name) == 1,
              X509_set_issuer_name(x509, issuer.map { X509_get_subject_name($0.pointer) } ?? name) == 1,
              X509_set_pubkey(x509, publicKey.pointer) == 1 else {
            throw OpenSSLError.last("X509_set_subject_name")
        }
        var extensions: [(Int32, String)] = []
        if isCA {
            extensions = [
                (NID_basic_constraints, "critical,CA:TRUE,pathlen:0"),
                (NID_key_usage, "critical,keyCertSign,cRLSign"),
                (NID_subject_key_identifier, "hash"),
            ]
        } else {
            extensions = [
                (NID_basic_constraints, "critical,CA:FALSE"),
                (NID_key_usage, "critical,digitalSignature"),
                (NID_ext_key_usage, "serverAuth,clientAuth"),
                (NID_subject_key_identifier, "hash"),
                (NID_authority_key_identifier, "keyid:always"),
            ]
            if !altNames.isEmpty {
                extensions.append((NID_subject_alt_name, altNames.map(\.description).joined(separator: ",")))
            }
        }
        var context = X509V3_CTX()
        X509V3_set_ctx(&context, issuer?.pointer ?? x509, x509, nil, nil, 0)
        for (nid, value) in extensions {
            guard let ext = X509V3_EXT_conf_nid(nil, &context, nid, value) else {
                throw OpenSSLError.last("extension \(value)")
            }
            defer { X509_EXTENSION_free(ext) }
            guard X509_add_ext(x509, ext, -1) == 1 else { throw OpenSSLError.last("X509_add_ext") }
        }
        guard X509_sign(x509, issuerKey.pointer, EVP_sha256()) > 0 else { throw OpenSSLError.last("X509_sign") }
        return certificate
    }

    /// 127 random bits, positive: RFC 5280 wants serials unique per CA, at most 20 bytes.
    private static func setRandomSerial(_ x509: OpaquePointer) throws {
        guard let bignum = BN_new() else { throw OpenSSLError.last("BN_new") }
        defer { BN_free(bignum) }
        guard BN_rand(bignum, 127, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) == 1,
              BN_to_ASN1_INTEGER(bignum, X509_get_serialNumber(x509)) != nil else {
            throw OpenSSLError.last("BN_rand")
        }
    }
}
