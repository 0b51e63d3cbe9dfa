/// The nginx configuration text for a set of nodes (`chatmesh nginx-conf`). It lives beside the
/// config it is made from so that unit tests can check it line by line.
public struct NginxConfig {
    /// The certificate and key nginx presents to clients (absolute paths).
    public struct FrontTLS {
        public var certFile: String
        public var keyFile: String

        public init(certFile: String, keyFile: String) {
            self.certFile = certFile
            self.keyFile = keyFile
        }
    }

    /// How the upstream spreads requests over the nodes.
    public enum Balance: String, Sendable, CaseIterable {
        /// nginx's default: any request to any node. Fine in mesh mode, where a node relays a
        /// request for another node's session to its owner (docs/RELAY.md).
        case roundRobin = "round-robin"
        /// `ip_hash`: a client stays on one node, so every request of a session reaches its
        /// owner directly. Needed with fanout = redis, which does not relay.
        case ipHash = "ip_hash"

        /// What `--balance` is when not given: round-robin where the nodes relay, ip_hash where not.
        public static func standard(for fanout: FanoutKind) -> Balance {
            fanout == .mesh ? .roundRobin : .ipHash
        }

        /// Why this balance cannot front a cluster with `fanout`, or nil when it can.
        public func refusal(for fanout: FanoutKind) -> String? {
            guard self == .roundRobin, fanout == .redis else { return nil }
            return "--balance round-robin needs fanout = mesh: with fanout = redis a node does not relay a request "
                + "for a session made on another node, so long-polling clients need a sticky upstream; "
                + "use --balance ip_hash (the default for fanout = redis)"
        }
    }

    public let config: ClusterConfig
    public let nodes: [NodeEntry]
    public let listen: String
    public let serverName: String
    public var balance: Balance
    /// Set: the server block is HTTPS (and WSS).
    public var tls: FrontTLS?
    /// The nodes themselves serve HTTPS (`[node] tls_cert`), so nginx proxies over TLS.
    public var upstreamTLS: Bool

    /// `balance` nil: `Balance.standard(for: config.fanout)`.
    public init(config: ClusterConfig, nodes: [NodeEntry], listen: String, serverName: String,
                balance: Balance? = nil, tls: FrontTLS? = nil, upstreamTLS: Bool = false) {
        self.config = config
        self.nodes = nodes
        self.listen = listen
        self.serverName = serverName
        self.balance = balance ?? Balance.standard(for: config.fanout)
        self.tls = tls
        self.upstreamTLS = upstreamTLS
    }

    /// Whether a path can be written into the config: always double-quoted there, so it must
    /// hold nothing that ends or escapes the quotes, nor a variable nginx would expand.
    public static func isWritable(path: String) -> Bool {
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

    /// The header comment's lines on the balance, and the upstream's directive for it.
    private var balanceComment: String {
        switch (balance, config.fanout) {
        case (.roundRobin, _):
            return """
            # Round-robin (nginx's default): any node takes any request. In mesh mode a node relays
            # a request for another node's session to its owner over the mesh, so long-polling and
            # the WebSocket upgrade work wherever they land. (--balance ip_hash keeps a client on
            # one node instead, which saves that hop.) If a node is down, nginx tries the next one.
            """
        case (.ipHash, .mesh):
            return """
            # ip_hash keeps a client on one node, so every request of its session reaches the owner
            # directly (mesh mode would also relay them; --balance round-robin spreads clients wider).
            # If that node is down, nginx tries the next one and the client's reconnect lands there.
            """
        case (.ipHash, .redis):
            return """
            # ip_hash keeps a client on one node, which long-polling needs with fanout = redis: a
            # node does not relay a request for another node's session (only mesh mode does).
            # If that node is down, nginx tries the next one and the client's reconnect lands there.
            """
        }
    }

    private var balanceDirective: String {
        balance == .ipHash ? "    ip_hash;\n" : ""
    }

    public var text: String {
        let heartbeatSeconds = ((config.engine.pingInterval + config.engine.pingTimeout).wholeMilliseconds + 999) / 1000
        let readTimeout = heartbeatSeconds + 30
        let bodyLimit = config.engine.maxPayload + 1024
        let servers = nodes.map { "    server \($0.listen) max_fails=1 fail_timeout=5s;  # node \($0.name)" }.joined(separator: "\n")
        return """
        # chatmesh front, generated by `chatmesh nginx-conf` from cluster.conf. Include it in
        # nginx's http context.
        \(balanceComment)
        upstream chatmesh {
        \(balanceDirective)\(servers)
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
