import ArgumentParser
import ClusterConfig
import Foundation

struct NginxConf: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "nginx-conf",
        abstract: "Print an nginx front for the cluster (an upstream of the nodes + WebSocket proxying).",
        discussion: """
        The output belongs in nginx's http context (e.g. /etc/nginx/conf.d/chatmesh.conf). \
        With fanout = mesh the upstream is round-robin by default: any node can take any \
        request, because a node relays a request for another node's session to its owner over \
        the mesh; --balance ip_hash keeps each client on one node instead (still valid; saves the \
        relay hop). With fanout = redis nodes do not relay, so long-polling needs ip_hash: it is \
        the default there and round-robin is refused. The read timeout \
        exceeds pingInterval + pingTimeout so idle WebSockets are not cut by nginx. With \
        --tls-cert and --tls-key nginx serves HTTPS and WSS (TLS 1.2 and 1.3) on port 443 unless \
        --listen says otherwise. Nodes that serve HTTPS themselves ([node] tls_cert) are proxied \
        over https.
        """
    )

    @Option(name: .long, help: "Path of cluster.conf.")
    var config: String = "cluster.conf"

    @Option(name: .long, help: "What nginx listens on: a port or address:port (default 80, or 443 with --tls-cert).")
    var listen: String?

    @Option(name: .long, help: "nginx server_name.")
    var serverName: String = "_"

    @Option(name: .long, help: "Only these nodes (comma separated), e.g. the ones in this rack.")
    var nodes: String?

    @Option(name: .long, help: ArgumentHelp(
        "How nginx spreads requests over the nodes: round-robin or ip_hash (default: round-robin with fanout = mesh, ip_hash with fanout = redis).",
        valueName: "round-robin|ip_hash"))
    var balance: NginxConfig.Balance?

    @Option(name: .long, help: "PEM certificate (chain) nginx presents to clients; makes the front HTTPS.")
    var tlsCert: String?

    @Option(name: .long, help: "PEM private key of --tls-cert.")
    var tlsKey: String?

    func validate() throws {
        guard (tlsCert == nil) == (tlsKey == nil) else {
            throw ValidationError("--tls-cert and --tls-key go together")
        }
        for path in [tlsCert, tlsKey].compactMap({ $0 }) where !NginxConfig.isWritable(path: path) {
            throw ValidationError("\(path): a path nginx can read cannot hold a newline, `\"`, `\\` or `$`")
        }
    }

    func run() throws {
        let clusterConfig: ClusterConfig
        do {
            clusterConfig = try ClusterConfig.load(path: config)
        } catch {
            printError("\(error)")
            throw ExitCode(1)
        }
        let balance = balance ?? NginxConfig.Balance.standard(for: clusterConfig.fanout)
        if let refusal = balance.refusal(for: clusterConfig.fanout) {
            printError("\(config): \(refusal)")
            throw ExitCode(2)
        }
        var selected = clusterConfig.nodes
        if let nodes {
            let names = nodes.split(separator: ",").map { String($0.filter { $0 != " " }) }
            for name in names where clusterConfig.node(named: name) == nil {
                printError("\(config): no [node \(name)] section")
                throw ExitCode(2)
            }
            selected = selected.filter { names.contains($0.name) }
        }
        // nginx serves one scheme to an upstream: every node plain HTTP, or every node HTTPS.
        let httpsNodes = selected.filter { $0.clientTLS != nil }.map(\.name)
        if !httpsNodes.isEmpty, httpsNodes.count != selected.count {
            let plain = selected.filter { $0.clientTLS == nil }.map(\.name)
            printError("\(config): nodes \(httpsNodes.joined(separator: ", ")) serve HTTPS (tls_cert) and \(plain.joined(separator: ", ")) plain HTTP; one upstream needs one scheme (use --nodes)")
            throw ExitCode(2)
        }
        var tls: NginxConfig.FrontTLS?
        if let tlsCert, let tlsKey {
            tls = NginxConfig.FrontTLS(certFile: Self.absolute(tlsCert), keyFile: Self.absolute(tlsKey))
        }
        print(NginxConfig(
            config: clusterConfig, nodes: selected, listen: listen ?? (tls == nil ? "80" : "443"), serverName: serverName,
            balance: balance, tls: tls, upstreamTLS: !httpsNodes.isEmpty
        ).text)
    }

    /// nginx resolves a relative path against its own prefix, not where this command ran.
    private static func absolute(_ path: String) -> String {
        URL(fileURLWithPath: path).standardizedFileURL.path
    }
}

/// `--balance round-robin|ip_hash`.
extension NginxConfig.Balance: ExpressibleByArgument {}
