import CSystemd
#if canImport(Glibc)
import Glibc
#endif

/// Listening sockets passed by systemd socket activation (`LISTEN_FDS`, named with
/// `FileDescriptorName=`): `client` for Socket.IO clients and `mesh` for node links. A single
/// socket without one of those names is the client socket.
public struct InheritedSockets: Sendable, Equatable {
    public var client: CInt?
    public var mesh: CInt?

    public init(client: CInt? = nil, mesh: CInt? = nil) {
        self.client = client
        self.mesh = mesh
    }

    public var isEmpty: Bool { client == nil && mesh == nil }

    /// Takes the sockets systemd passed to this process (and clears the LISTEN_* variables, so
    /// children do not inherit them). Returns an error text for names it does not understand.
    public static func fromEnvironment() -> Result<InheritedSockets, SocketActivationError> {
        var names: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?
        let count = sd_listen_fds_with_names(1, &names)
        guard count > 0 else {
            return count < 0 ? .failure(SocketActivationError("sd_listen_fds_with_names failed: errno \(-count)")) : .success(InheritedSockets())
        }
        defer {
            for index in 0..<Int(count) { free(names?[index]) }
            free(names)
        }
        let first = SD_LISTEN_FDS_START
        var sockets = InheritedSockets()
        var unnamed: [CInt] = []
        for index in 0..<Int(count) {
            let fd = first + CInt(index)
            let name = names?[index].map { String(cString: $0) } ?? ""
            switch name {
            case "client": sockets.client = fd
            case "mesh": sockets.mesh = fd
            default: unnamed.append(fd)
            }
        }
        if sockets.client == nil, unnamed.count == 1 {
            sockets.client = unnamed[0]
        } else if !unnamed.isEmpty {
            return .failure(SocketActivationError("inherited \(count) sockets; name them 'client' and 'mesh' with FileDescriptorName="))
        }
        return .success(sockets)
    }

    /// The local address a socket is bound to, as host and port.
    public static func boundAddress(of fd: CInt) -> (host: String, port: Int)? {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let result = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard result == 0 else { return nil }
        var host = [CChar](repeating: 0, count: Int(NI_MAXHOST))
        var service = [CChar](repeating: 0, count: Int(NI_MAXSERV))
        let status = withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                getnameinfo($0, length, &host, socklen_t(host.count), &service, socklen_t(service.count), NI_NUMERICHOST | NI_NUMERICSERV)
            }
        }
        guard status == 0, let port = Int(String(cString: service)) else { return nil }
        return (String(cString: host), port)
    }
}

extension InheritedSockets {
    /// Every numeric address `host` stands for (a name is resolved; IPv6 comes out canonical),
    /// so a socket's bound address can be matched against cluster.conf however it is spelt.
    public static func numericAddresses(of host: String) -> Set<String> {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var results: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, nil, &hints, &results) == 0 else { return [] }
        defer { freeaddrinfo(results) }
        var addresses = Set<String>()
        var cursor = results
        while let entry = cursor {
            var text = [CChar](repeating: 0, count: Int(NI_MAXHOST))
            if getnameinfo(entry.pointee.ai_addr, entry.pointee.ai_addrlen, &text, socklen_t(text.count), nil, 0, NI_NUMERICHOST) == 0 {
                addresses.insert(String(cString: text))
            }
            cursor = entry.pointee.ai_next
        }
        return addresses
    }
}

public struct SocketActivationError: Error, CustomStringConvertible, Sendable {
    public var description: String
    init(_ description: String) { self.description = description }
}
