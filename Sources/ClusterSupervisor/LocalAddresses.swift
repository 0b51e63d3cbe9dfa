import ClusterConfig
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The IP addresses of this host's interfaces, used to tell which nodes of cluster.conf
/// belong here: the same file lists every node of every host.
public struct LocalAddresses: Sendable {
    public var addresses: Set<IPAddress>

    public init(_ addresses: Set<IPAddress>) { self.addresses = addresses }

    /// Every IPv4 and IPv6 address on this host's interfaces (getifaddrs), whether the
    /// interface is up or not: a node configured on it is meant to run here.
    public static func current() -> LocalAddresses {
        var found: Set<IPAddress> = []
        var list: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&list) == 0, let first = list else { return LocalAddresses(found) }
        defer { freeifaddrs(list) }
        var cursor: UnsafeMutablePointer<ifaddrs>? = first
        while let entry = cursor {
            if let sa = entry.pointee.ifa_addr, let address = IPAddress(sockaddr: sa) {
                found.insert(address)
            }
            cursor = entry.pointee.ifa_next
        }
        return LocalAddresses(found)
    }

    /// Whether a node whose socket binds `address` runs on this host: loopback, the
    /// wildcard (0.0.0.0, ::), or an address of one of its interfaces. A host name counts
    /// when one of the addresses `resolve` gives for it does.
    public func contains(_ address: HostPort, resolve: (String) -> [IPAddress] = LocalAddresses.resolve) -> Bool {
        if address.isLoopback { return true }
        let candidates = IPAddress(address.host).map { [$0] } ?? resolve(address.host)
        return candidates.contains { $0.isLoopback || $0.isWildcard || addresses.contains($0) }
    }

    /// The addresses a host name resolves to (getaddrinfo); empty when it does not resolve.
    public static func resolve(_ name: String) -> [IPAddress] {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var result: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(name, nil, &hints, &result) == 0, let first = result else { return [] }
        defer { freeaddrinfo(result) }
        var addresses: [IPAddress] = []
        var cursor: UnsafeMutablePointer<addrinfo>? = first
        while let entry = cursor {
            if let sa = entry.pointee.ai_addr, let address = IPAddress(sockaddr: sa) {
                addresses.append(address)
            }
            cursor = entry.pointee.ai_next
        }
        return addresses
    }
}

extension IPAddress {
    /// The address of an AF_INET or AF_INET6 socket address; nil for other families.
    init?(sockaddr pointer: UnsafeMutablePointer<sockaddr>) {
        switch Int32(pointer.pointee.sa_family) {
        case AF_INET:
            let bytes = pointer.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { p in
                withUnsafeBytes(of: p.pointee.sin_addr) { Array($0) }
            }
            self.init(bytes: bytes)
        case AF_INET6:
            let bytes = pointer.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { p in
                withUnsafeBytes(of: p.pointee.sin6_addr) { Array($0) }
            }
            self.init(bytes: bytes)
        default:
            return nil
        }
    }
}
