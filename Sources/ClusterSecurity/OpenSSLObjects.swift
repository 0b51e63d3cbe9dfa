import CLibCrypto

/// One X.509 certificate, owned: freed with the object.
public final class Certificate {
    let pointer: OpaquePointer

    init(taking pointer: OpaquePointer) { self.pointer = pointer }

    deinit { X509_free(pointer) }

    /// PEM text (`-----BEGIN CERTIFICATE-----`).
    public func pem() -> String {
        withMemoryBIO { PEM_write_bio_X509($0, pointer) }
    }

    /// Whether `subjectAltName` has a DNS entry equal to `name`: exact and case-sensitive, no
    /// wildcards, the subject CN not looked at — the rule the mesh applies to a peer.
    public func namesHost(_ name: String) -> Bool {
        dnsNames.contains(name)
    }

    /// The DNS entries of `subjectAltName`, in order.
    public var dnsNames: [String] {
        guard let raw = X509_get_ext_d2i(pointer, NID_subject_alt_name, nil, nil) else { return [] }
        let names = OpaquePointer(raw)
        defer { GENERAL_NAMES_free(names) }
        var found: [String] = []
        for index in 0..<OPENSSL_sk_num(names) {
            guard let entry = OPENSSL_sk_value(names, index)?.assumingMemoryBound(to: GENERAL_NAME.self),
                  entry.pointee.type == GEN_DNS, let text = entry.pointee.d.dNSName,
                  let bytes = ASN1_STRING_get0_data(text) else { continue }
            found.append(String(decoding: UnsafeBufferPointer(start: bytes, count: Int(ASN1_STRING_length(text))), as: UTF8.self))
        }
        return found
    }

    /// Where the certificate stands against the clock: nil when valid now.
    public func validityProblem() -> String? {
        if X509_cmp_current_time(X509_get0_notBefore(pointer)) >= 0 {
            return "is not valid yet (valid from \(Self.text(X509_get0_notBefore(pointer))))"
        }
        if X509_cmp_current_time(X509_get0_notAfter(pointer)) <= 0 {
            return "has expired (valid until \(Self.text(X509_get0_notAfter(pointer))))"
        }
        return nil
    }

    /// The subject as one line, e.g. `CN=a1, O=chatmesh`.
    public var subject: String {
        withMemoryBIO { X509_NAME_print_ex($0, X509_get_subject_name(pointer), 0, 0) }
    }

    static func text(_ time: UnsafePointer<ASN1_TIME>?) -> String {
        withMemoryBIO { ASN1_TIME_print($0, time) }
    }
}

/// One private key (EVP_PKEY), owned.
public final class PrivateKey {
    let pointer: OpaquePointer

    init(taking pointer: OpaquePointer) { self.pointer = pointer }

    deinit { EVP_PKEY_free(pointer) }

    /// Unencrypted PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`).
    public func pem() -> String {
        withMemoryBIO { PEM_write_bio_PrivateKey($0, pointer, nil, nil, 0, nil, nil) }
    }

    /// A new ECDSA P-256 key from OpenSSL's CSPRNG.
    public static func generateP256() throws -> PrivateKey {
        guard let context = EVP_PKEY_CTX_new_id(EVP_PKEY_EC, nil) else { throw OpenSSLError.last("EVP_PKEY_CTX_new_id") }
        defer { EVP_PKEY_CTX_free(context) }
        guard EVP_PKEY_keygen_init(context) == 1,
              EVP_PKEY_CTX_set_ec_paramgen_curve_nid(context, NID_X9_62_prime256v1) == 1 else {
            throw OpenSSLError.last("EVP_PKEY_keygen_init")
        }
        var key: OpaquePointer?
        guard EVP_PKEY_keygen(context, &key) == 1, let key else { throw OpenSSLError.last("EVP_PKEY_keygen") }
        return PrivateKey(taking: key)
    }
}

/// A libcrypto call failed; the message carries OpenSSL's own reason.
public struct OpenSSLError: Error, CustomStringConvertible {
    public var description: String

    /// `call` failed: takes (and clears) OpenSSL's error queue for the reason.
    static func last(_ call: String) -> OpenSSLError {
        OpenSSLError(description: "\(call) failed: \(takeErrorQueue() ?? "no reason given")")
    }
}

/// The oldest error on this thread's OpenSSL queue as text, the queue cleared.
func takeErrorQueue() -> String? {
    let code = ERR_get_error()
    ERR_clear_error()
    guard code != 0 else { return nil }
    var buffer = [CChar](repeating: 0, count: 256)
    ERR_error_string_n(code, &buffer, buffer.count)
    return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// What `write` puts into a fresh memory BIO, as text.
func withMemoryBIO(_ write: (OpaquePointer?) -> Int32) -> String {
    guard let bio = BIO_new(BIO_s_mem()) else { return "" }
    defer { BIO_free(bio) }
    _ = write(bio)
    let count = Int(BIO_ctrl_pending(bio))
    var bytes = [UInt8](repeating: 0, count: count)
    let read = bytes.withUnsafeMutableBytes { BIO_read(bio, $0.baseAddress, Int32(count)) }
    return String(decoding: bytes.prefix(max(0, Int(read))), as: UTF8.self)
}
