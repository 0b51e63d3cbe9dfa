#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// PEM files for the TLS unit tests: a test CA (valid until 2126), a client certificate it
/// signed (DNS:chatmesh-client) with its key, and an unrelated key. Made once with the openssl
/// CLI; only ever used by these tests.
enum RedisTLSFixtures {
    static let caPEM = """
-----BEGIN CERTIFICATE-----
MIIBtDCCAVugAwIBAgIUaEVC0ufNwFa5p4yIekzs0z/Bn8EwCgYIKoZIzj0EAwIw
JzElMCMGA1UEAwwcY2hhdG1lc2ggUmVkaXNGYW5vdXRUZXN0cyBDQTAgFw0yNjEy
MDIwNjQ3NDFaGA8yMTI2MTEwODA2NDc0MVowJzElMCMGA1UEAwwcY2hhdG1lc2gg
UmVkaXNGYW5vdXRUZXN0cyBDQTBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABEmV
NgOUh8hCdzTDPNPXrroyNir46Iv2UxGmvZyp7wDvXnd+EpqKVGRNkFBS0M6MnKIa
G2jqgOLepyA2ZNoCYeujYzBhMB0GA1UdDgQWBBQf3R9sZy1fC/E7HiEvrl5sjeqV
mjAfBgNVHSMEGDAWgBQf3R9sZy1fC/E7HiEvrl5sjeqVmjAPBgNVHRMBAf8EBTAD
AQH/MA4GA1UdDwEB/wQEAwIBBjAKBggqhkjOPQQDAgNHADBEAiAs/nkM2v3LLuA3
Y4jwbjWHbKNwi02IQbra1/OUUeZjmwIgc9ZcMG0Libb45fGPyEULK7cHy7Soh1Hr
FTNiTp8OZbY=
-----END CERTIFICATE-----
"""

    static let clientCertificatePEM = """
-----BEGIN CERTIFICATE-----
MIIB1zCCAX6gAwIBAgIUcIVGleixysfY5E8GQJ02oUQU4D8wCgYIKoZIzj0EAwIw
JzElMCMGA1UEAwwcY2hhdG1lc2ggUmVkaXNGYW5vdXRUZXN0cyBDQTAgFw0yNjEy
MDIwNjQ3NDJaGA8yMTI2MTEwODA2NDc0MlowGjEYMBYGA1UEAwwPY2hhdG1lc2gt
Y2xpZW50MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEv7FdEdrMJXEjg13OkII1
/vruAdJ9CW9qkPXD9txFw/o0ofVrEirwmxxLIotxPEl6NFMDvfnR/jDvrLL0CxC9
kKOBkjCBjzAaBgNVHREEEzARgg9jaGF0bWVzaC1jbGllbnQwEwYDVR0lBAwwCgYI
KwYBBQUHAwIwDAYDVR0TAQH/BAIwADAOBgNVHQ8BAf8EBAMCB4AwHQYDVR0OBBYE
FE7Bm2ePqMX4vll9fr6w7Q5rVgX0MB8GA1UdIwQYMBaAFB/dH2xnLV8L8TseIS+u
XmyN6pWaMAoGCCqGSM49BAMCA0cAMEQCIDUqwt039OCr+/PsC6fo2x4dsz809JNB
1uC9H99yW71lAiAdGqhiqpr1Aqh5sWoxAe0x7V2CoAV2S3Ppg8DqhQc/9A==
-----END CERTIFICATE-----
"""

    static let clientKeyPEM = """
-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgmhmHZnxMDOrVtxet
v7X6/trqA1/2kQ6FmQbeyukGkTehRANCAAS/sV0R2swlcSODXc6QgjX++u4B0n0J
b2qQ9cP23EXD+jSh9WsSKvCbHEsii3E8SXo0UwO9+dH+MO+ssvQLEL2Q
-----END PRIVATE KEY-----
"""

    static let unrelatedKeyPEM = """
-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgDt//9vaNO0fpLBjq
yCk2B9FKMHDtiCBcptVh7mDyhGKhRANCAASy13JL24GPJH8pD4LgH4mfQBuBaHUd
uTFLMUblWzj4NrXY1ae3Tu/4Rm0AWgGYRO2CftJvMltPBb3sMDYoaEJq
-----END PRIVATE KEY-----
"""
}

/// A fresh directory under /tmp for the files one test writes; `remove()` deletes them.
final class TemporaryFiles {
    let directory: String
    private var written: [String] = []

    init() {
        var template = Array("/tmp/chatmesh-redis-tls-test-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        precondition(made != nil, "mkdtemp failed")
        directory = String(cString: made!)
    }

    /// Writes `text` to `name` in the directory; returns its path.
    func write(_ name: String, _ text: String) -> String {
        let path = directory + "/" + name
        let file = fopen(path, "w")!
        fputs(text, file)
        fclose(file)
        written.append(path)
        return path
    }

    func remove() {
        for path in written { unlink(path) }
        rmdir(directory)
    }
}
