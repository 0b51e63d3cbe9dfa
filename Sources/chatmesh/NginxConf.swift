import ArgumentParser
import ClusterConfig
import Foundation

struct NginxConf: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "nginx-conf",
        abstract: "Print an nginx front for the cluster (ip_hash upstream + WebSocket proxying).",
        discussion: """
        The output belongs in nginx's http context (e.g. /etc/nginx/conf.d/chatmesh.conf). \
        ip_hash keeps each client on one node, which long-polling needs; the read timeout \
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
            tls: tls, upstreamTLS: !httpsNodes.isEmpty
        ).text)
    }

    /// nginx resolves a relative path against its own prefix, not where this command ran.
    private static func absolute(_ path: String) -> String {
        URL(fileURLWithPath: path).standardizedFileURL.path
    }
}

/// The nginx configuration text for a set of nodes.
struct NginxConfig {
    /// The certificate and key nginx presents to clients (absolute paths).
    struct FrontTLS {
        var certFile: String
        var keyFile: String
    }

    let config: ClusterConfig
    let nodes: [NodeEntry]
    let listen: String
    let serverName: String
    /// Set: the server block is HTTPS (and WSS).
    var tls: FrontTLS? = nil
    /// The nodes themselves serve HTTPS (`[node] tls_cert`), so nginx proxies over TLS.
    var upstreamTLS = false

    /// Whether a path can be written into the config: always double-quoted there, so it must
    /// hold nothing that ends or escapes the quotes, nor a variable nginx would expand.
    static func isWritable(path: String) -> Bool {
        !path.isEmpty && !path.contains(where: { "\n\r\"\\$".contains($0) })
    }

    private var listenDirective: String {
        tls == nil ? "listen \(listen);" : "listen \(listen) ssl;"
    }

    /// The TLS lines of the server block (empty for plain HTTP).
    private var tlsDirectives: String {
        guard let tls else { return "" }
        return """

            # HTTPS and WSS to clients: TLS ends at nginx (X-Forwarded-Proto says https).
            ssl_certificate "\(tls.certFile)";
            ssl_certificate_key "\(tls.keyFile)";
            ssl_protocols TLSv1.2 TLSv1.3;

        """
    }

    /// nginx's own checks of the nodes' certificates are left at its default (not verified):
    /// the nodes are named by address in the upstream, which their certificates may not list.
    private var upstreamScheme: String { upstreamTLS ? "https" : "http" }

    var text: String {
        let heartbeatSeconds = ((config.engine.pingInterval + config.engine.pingTimeout).wholeMilliseconds + 999) / 1000
        let readTimeout = heartbeatSeconds + 30
        let bodyLimit = config.engine.maxPayload + 1024
        let servers = nodes.map { "    server \($0.listen) max_fails=1 fail_timeout=5s;  # node \($0.name)" }.joined(separator: "\n")
        return """
        # chatmesh front, generated by `chatmesh nginx-conf` from cluster.conf. Include it in
        # nginx's http context. ip_hash keeps a client on one node (long-polling needs that);
        # if that node is down, nginx tries the next one and the client's reconnect lands there.
        upstream chatmesh {
            ip_hash;
        \(servers)
        }

        map $http_upgrade $chatmesh_connection {
            default upgrade;
            ''      close;
        }

        server {
            \(listenDirective)
            server_name \(serverName);
        \(tlsDirectives)
            location / {
                proxy_pass \(upstreamScheme)://chatmesh;
                proxy_http_version 1.1;
                proxy_set_header Upgrade $http_upgrade;
                proxy_set_header Connection $chatmesh_connection;
                proxy_set_header Host $host;
                proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
                proxy_set_header X-Forwarded-Proto $scheme;
                # Above pingInterval + pingTimeout (\(heartbeatSeconds) s), so nginx never cuts a
                # connection that the Engine.IO heartbeat keeps alive.
                proxy_read_timeout \(readTimeout)s;
                proxy_send_timeout \(readTimeout)s;
                # Long-polling responses must reach the client at once.
                proxy_buffering off;
                proxy_next_upstream error timeout http_502 http_503;
                client_max_body_size \(bodyLimit);
            }
        }
        """
    }
}
