import Foundation

/// PEM files for the mesh TLS tests, made once with the openssl CLI (valid for 100 years):
/// a cluster CA, certificates for a1 and a2 (SAN DNS:<name>, IP:127.0.0.1, serverAuth +
/// clientAuth), a CA-signed certificate that names a3, and one for a2 from another CA.
/// Keys are test-only. `directory()` writes them into a fresh directory as `<name>.pem`.
enum TLSTestCertificates {
    static let files: [String: String] = [
        "ca": """
-----BEGIN CERTIFICATE-----
MIIBgTCCASegAwIBAgIUDZW8HSJCE3Boi+SxtBobhFTb+R4wCgYIKoZIzj0EAwIw
DTELMAkGA1UEAwwCY2EwIBcNMjYxMjAyMDYyOTM1WhgPMjEyNjExMDgwNjI5MzVa
MA0xCzAJBgNVBAMMAmNhMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEq5uh5br/
8AofFbqlci6vwAZlORl7HTEpImI4GCLEwGdnIx4zDHerhjK6TGiySp2DjkalKIpi
xyC4yzlo20aDfKNjMGEwHQYDVR0OBBYEFN2T5Gx8tXg8263MHaR0jyrFqOxTMB8G
A1UdIwQYMBaAFN2T5Gx8tXg8263MHaR0jyrFqOxTMA8GA1UdEwEB/wQFMAMBAf8w
DgYDVR0PAQH/BAQDAgEGMAoGCCqGSM49BAMCA0gAMEUCIQCMnA6HocXpwjGb5Y4L
s36rClJV6kHGYrYAAfYBfNt6+QIgGrMhmcS+5ZhzOcbqNc3HIKxDxkYT1WocEpSg
HF7MUnU=
-----END CERTIFICATE-----
""",
        "a1": """
-----BEGIN CERTIFICATE-----
MIIBoDCCAUagAwIBAgIURRkGr9maWUZhejrBBx/rME/2ocMwCgYIKoZIzj0EAwIw
DTELMAkGA1UEAwwCY2EwIBcNMjYxMjAyMDYyOTM1WhgPMjEyNjExMDgwNjI5MzVa
MA0xCzAJBgNVBAMMAmExMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEolo0qNbb
lrWT+6NYJG8LmYOy6l9PEJcrsvzlrxT5q3+pGyw4BjAlsAiI6hlDyLIpP1k8Gh3r
xLdPZPD/94DYO6OBgTB/MBMGA1UdEQQMMAqCAmExhwR/AAABMB0GA1UdJQQWMBQG
CCsGAQUFBwMBBggrBgEFBQcDAjAJBgNVHRMEAjAAMB0GA1UdDgQWBBRpEhGhJqmo
StQJVMkzR5lEXbSzQTAfBgNVHSMEGDAWgBTdk+RsfLV4PNutzB2kdI8qxajsUzAK
BggqhkjOPQQDAgNIADBFAiEAnuFoTS151KK7hiZG1c1OZ5/AQNyaUIuWiJpch5m1
6l0CIFe8cHNHR9kgLkFKP8OKnNi1KY9AwClxTKFaoXeSpOTa
-----END CERTIFICATE-----
""",
        "a1-key": """
-----BEGIN EC PRIVATE KEY-----
MHcCAQEEIJMLJkhfpdF+0B51wp/an7s1OeN1NOyA9v1G7NxcmAB5oAoGCCqGSM49
AwEHoUQDQgAEolo0qNbblrWT+6NYJG8LmYOy6l9PEJcrsvzlrxT5q3+pGyw4BjAl
sAiI6hlDyLIpP1k8Gh3rxLdPZPD/94DYOw==
-----END EC PRIVATE KEY-----
""",
        "a2": """
-----BEGIN CERTIFICATE-----
MIIBoTCCAUagAwIBAgIURRkGr9maWUZhejrBBx/rME/2ocQwCgYIKoZIzj0EAwIw
DTELMAkGA1UEAwwCY2EwIBcNMjYxMjAyMDYyOTM1WhgPMjEyNjExMDgwNjI5MzVa
MA0xCzAJBgNVBAMMAmEyMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEG574F/9E
ZQ5+oOOkY9s60E4YrXp/kha4LGeXHt2mFIdaPGCKga6lkVNn/kz2E9lA44ivFdrX
M199l9t8Tt2//KOBgTB/MBMGA1UdEQQMMAqCAmEyhwR/AAABMB0GA1UdJQQWMBQG
CCsGAQUFBwMBBggrBgEFBQcDAjAJBgNVHRMEAjAAMB0GA1UdDgQWBBRe/x1ze20t
PWwTkrfOqk019yBJjTAfBgNVHSMEGDAWgBTdk+RsfLV4PNutzB2kdI8qxajsUzAK
BggqhkjOPQQDAgNJADBGAiEA7IUEH9PeYMhU2pNQrttBaHpvkBlrlWyDmfI1zOQZ
zgMCIQCYoztmGrVrucT62jmcwnRQbJdLbn9HNRftIuSP0mUu8A==
-----END CERTIFICATE-----
""",
        "a2-key": """
-----BEGIN EC PRIVATE KEY-----
MHcCAQEEID+08MD8aAPmawM7sc26mTL3yPfU4s/MfyXhJ7YSdAYaoAoGCCqGSM49
AwEHoUQDQgAEG574F/9EZQ5+oOOkY9s60E4YrXp/kha4LGeXHt2mFIdaPGCKga6l
kVNn/kz2E9lA44ivFdrXM199l9t8Tt2//A==
-----END EC PRIVATE KEY-----
""",
        "a2-naming-a3": """
-----BEGIN CERTIFICATE-----
MIIBoTCCAUagAwIBAgIURRkGr9maWUZhejrBBx/rME/2ocUwCgYIKoZIzj0EAwIw
DTELMAkGA1UEAwwCY2EwIBcNMjYxMjAyMDYyOTM2WhgPMjEyNjExMDgwNjI5MzZa
MA0xCzAJBgNVBAMMAmEzMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEUPD8tnJf
LsQILf4nEyGN9S+Zgp/ZAPvm0AMl6fZ0eeX/x+1Tnsc81FrD75fgrWeplYrfq6Kb
9Hj26VKGO962P6OBgTB/MBMGA1UdEQQMMAqCAmEzhwR/AAABMB0GA1UdJQQWMBQG
CCsGAQUFBwMBBggrBgEFBQcDAjAJBgNVHRMEAjAAMB0GA1UdDgQWBBSJ9GmKhAAJ
G2OQOVdiUuR5vPCB7DAfBgNVHSMEGDAWgBTdk+RsfLV4PNutzB2kdI8qxajsUzAK
BggqhkjOPQQDAgNJADBGAiEAjXLEG+2l0yNvXVnBuMDtigI4L0U6tTW/xW41vhED
xucCIQCcbJaFIrTRVB2zvUpDFuPOa3NWC34QL7/IozJzCdso2w==
-----END CERTIFICATE-----
""",
        "a2-naming-a3-key": """
-----BEGIN EC PRIVATE KEY-----
MHcCAQEEIIN4zdsLuESCYhqNfBZDNpnI6A5/COmW1gdOBTNsQBRloAoGCCqGSM49
AwEHoUQDQgAEUPD8tnJfLsQILf4nEyGN9S+Zgp/ZAPvm0AMl6fZ0eeX/x+1Tnsc8
1FrD75fgrWeplYrfq6Kb9Hj26VKGO962Pw==
-----END EC PRIVATE KEY-----
""",
        "a2-other-ca": """
-----BEGIN CERTIFICATE-----
MIIBpjCCAUugAwIBAgIUPcgUgzlM0sQyeyhnaIrW9kLvsMUwCgYIKoZIzj0EAwIw
EjEQMA4GA1UEAwwHb3RoZXJjYTAgFw0yNjEyMDIwNjI5MzZaGA8yMTI2MTEwODA2
MjkzNlowDTELMAkGA1UEAwwCYTIwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAASH
adYsmEgsdAh8ckyjwwxLb7TJcEaFPxRlYjcRTvOKFO01KEcLh+HgtgsntvFGFs5y
KOYXYs99tzn8fpMFh0ylo4GBMH8wEwYDVR0RBAwwCoICYTKHBH8AAAEwHQYDVR0l
BBYwFAYIKwYBBQUHAwEGCCsGAQUFBwMCMAkGA1UdEwQCMAAwHQYDVR0OBBYEFMQt
RN6fR8QKrGbFzyyV/zDj0NLzMB8GA1UdIwQYMBaAFBlK34IzbHrd2+UELYkOe7nP
bmTiMAoGCCqGSM49BAMCA0kAMEYCIQCSU6DIkoD+Aq3juUZzTp5SVBy7NCaiMoGT
VAcbMbfwvgIhAM6Uq0Nwz5mE+oR/x2BDbqGiabt8MOhtjwOYmqQ/2P51
-----END CERTIFICATE-----
""",
        "a2-other-ca-key": """
-----BEGIN EC PRIVATE KEY-----
MHcCAQEEIMDkJIOZNeDI55KtGxyoZh7BSVh0YALuWzxzURntRiE5oAoGCCqGSM49
AwEHoUQDQgAEh2nWLJhILHQIfHJMo8MMS2+0yXBGhT8UZWI3EU7zihTtNShHC4fh
4LYLJ7bxRhbOcijmF2LPfbc5/H6TBYdMpQ==
-----END EC PRIVATE KEY-----
""",
    ]

    /// Writes every file into a fresh temporary directory (keys 0600) and returns it.
    static func directory() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("mesh-tls-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        for (name, pem) in files {
            let path = dir.appendingPathComponent("\(name).pem").path
            let written = FileManager.default.createFile(atPath: path, contents: Data(pem.utf8),
                                                         attributes: [.posixPermissions: name.hasSuffix("-key") ? 0o600 : 0o644])
            guard written else { throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: path]) }
        }
        return dir
    }
}
