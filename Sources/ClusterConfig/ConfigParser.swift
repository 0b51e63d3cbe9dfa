import NIOCore

/// Line-by-line reader of cluster.conf. Syntax and per-value problems are reported as
/// soon as their line is read; cross-section rules (unique addresses, secret, fanout)
/// are checked once the whole file is in.
struct ConfigParser {
    let file: String

    init(file: String) { self.file = file }

    private enum Section: Equatable {
        case cluster, redis, engineio, limits, mesh, recovery
        case node(Int)  // index into `drafts`
    }

    static let validSectionsText = ConfigSection.all.map(\.title).joined(separator: ", ")
    /// Upper bound for every number: fits in 32 bits, and milliseconds of it still fit
    /// in a 64-bit nanosecond count.
    static let maxNumber = 2_147_483_647
    static let maxNodeNameLength = 64

    private struct NodeDraft {
        var name: String
        var line: Int
        var listen: HostPort?
        var listenLine = 0
        var mesh: HostPort?
        var meshLine = 0
        /// Client-facing TLS files and their lines.
        var tlsCert: String?
        var tlsCertLine = 0
        var tlsKey: String?
        var tlsKeyLine = 0
    }

    /// A TLS-related path key as read, checked against its section's other keys in `finish`.
    private struct PathKey {
        var value: String
        var line: Int
    }

    private var config = ClusterConfig()
    private var section: Section?
    private var sectionLines: [String: Int] = [:]
    private var nodeIndexByName: [String: Int] = [:]
    private var drafts: [NodeDraft] = []
    /// Keys seen in the current section, with their lines.
    private var keyLines: [String: Int] = [:]
    private var fanoutLine = 0
    /// Lines of the two values the frame-size rule compares (0 = not set in the file).
    private var maxPayloadLine = 0
    private var maxFrameLine = 0
    private var redisURLLine = 0
    /// `[redis] mode` as set (nil when absent) and its line; resolved against the url in `finish`.
    private var redisMode: RedisPubSubMode?
    private var redisModeLine = 0
    /// `[mesh] tls` (nil when absent) and its line.
    private var meshTLSOn: Bool?
    private var meshTLSLine = 0
    /// `tls_ca` / `tls_cert` / `tls_key` of `[mesh]` and of `[redis]`, by key.
    private var meshTLSFiles: [String: PathKey] = [:]
    private var redisTLSFiles: [String: PathKey] = [:]

    private func fail(_ line: Int, _ message: String) -> ConfigError {
        ConfigError(file: file, line: line, message: message)
    }

    mutating func parse(_ text: String) throws -> ClusterConfig {
        var bytes = Array(text.utf8)[...]
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { bytes = bytes.dropFirst(3) }
        for (i, line) in bytes.split(separator: 0x0A, omittingEmptySubsequences: false).enumerated() {
            try parseLine(line, number: i + 1)
        }
        return try finish()
    }

    // MARK: lines

    private mutating func parseLine(_ raw: ArraySlice<UInt8>, number: Int) throws {
        var line = raw
        if line.last == 0x0D { line = line.dropLast() }  // CRLF
        if let bad = line.firstIndex(where: { ($0 < 0x20 && $0 != 0x09) || $0 == 0x7F }) {
            if line[bad] == 0x0D {
                throw fail(number, "stray carriage return (CR) inside the line; use LF or CRLF line endings")
            }
            throw fail(number, "control character \(hexByte(line[bad])) is not allowed")
        }
        // A comment starts at '#' at the beginning of the line or after whitespace, so
        // values such as `url = redis://:pa#ss@host` keep their '#'.
        if let hash = line.indices.first(where: { line[$0] == 0x23 && ($0 == line.startIndex || isBlank(line[$0 - 1])) }) {
            line = line[..<hash]
        }
        line = trimmed(line)
        if line.isEmpty { return }
        if line.first == 0x5B {  // '['
            try parseHeader(line, number: number)
            return
        }
        guard let eq = line.firstIndex(of: 0x3D) else {  // '='
            throw fail(number, "expected 'key = value' or a [section] header, got \(quoted(string(line)))")
        }
        let key = string(trimmed(line[..<eq]))
        let value = string(trimmed(line[(eq + 1)...]))
        if key.isEmpty { throw fail(number, "missing key name before '=' in \(quoted(string(line)))") }
        try parseKey(key, value: value, number: number)
    }

    private mutating func parseHeader(_ line: ArraySlice<UInt8>, number: Int) throws {
        let text = string(line)
        guard line.last == 0x5D else {  // ']'
            if line.contains(0x5D) {
                throw fail(number, "unexpected text after ']' in section header \(quoted(text))")
            }
            throw fail(number, "missing ']' in section header \(quoted(text))")
        }
        let inner = line.dropFirst().dropLast()
        if inner.contains(0x5B) || inner.contains(0x5D) {
            throw fail(number, "malformed section header \(quoted(text))")
        }
        let words = inner.split(whereSeparator: isBlank).map(string)
        guard let name = words.first else {
            throw fail(number, "empty section header '[]'; valid sections: \(Self.validSectionsText)")
        }
        keyLines = [:]
        switch name {
        case "node":
            guard words.count == 2 else {
                if words.count == 1 {
                    throw fail(number, "[node] needs a name: [node NAME], e.g. [node a1]")
                }
                throw fail(number, "a node header takes exactly one name, e.g. [node a1]; got \(quoted(text))")
            }
            let nodeName = words[1]
            if let problem = nodeNameProblem(nodeName) { throw fail(number, problem) }
            if let first = nodeIndexByName[nodeName] {
                throw fail(number, "duplicate node name '\(nodeName)' (first defined at line \(drafts[first].line))")
            }
            // Session ids name their node by its tag (NodeTag), so two nodes cannot share one.
            let tag = NodeTag.of(nodeName: nodeName)
            if let other = drafts.first(where: { NodeTag.of(nodeName: $0.name) == tag }) {
                throw fail(number, "nodes '\(other.name)' (line \(other.line)) and '\(nodeName)' have the same session id tag '\(tag)' (a hash of the name); rename one of them")
            }
            nodeIndexByName[nodeName] = drafts.count
            drafts.append(NodeDraft(name: nodeName, line: number))
            section = .node(drafts.count - 1)
        case "cluster", "redis", "engineio", "limits", "mesh", "recovery":
            if words.count > 1 {
                throw fail(number, "section [\(name)] takes no name; got \(quoted(text))")
            }
            if let first = sectionLines[name] {
                throw fail(number, "duplicate section [\(name)] (first at line \(first)); put all its keys in one section")
            }
            sectionLines[name] = number
            switch name {
            case "cluster": section = .cluster
            case "redis": section = .redis
            case "engineio": section = .engineio
            case "mesh": section = .mesh
            case "recovery": section = .recovery
            default: section = .limits
            }
        default:
            var message = "unknown section [\(words.joined(separator: " "))]; valid sections: \(Self.validSectionsText)"
            if let hint = suggestion(name, among: ConfigSection.all.map(\.name)) {
                message += "; did you mean [\(hint)]?"
            }
            throw fail(number, message)
        }
    }

    /// `[engineio] or [mesh]`: every section that has `key` (some keys, such as
    /// ping_interval, mean the same thing in several sections); nil when none does.
    private static func homes(of key: String) -> String? {
        let titles = ConfigSection.all.filter { $0.keys.contains(key) }.map(\.title)
        return titles.isEmpty ? nil : titles.joined(separator: " or ")
    }

    private mutating func parseKey(_ key: String, value: String, number: Int) throws {
        guard let section else {
            var message = "'\(key)' is set before any [section] header"
            if let homes = Self.homes(of: key) {
                message += "; put it under \(homes)"
            } else {
                message += "; valid sections: \(Self.validSectionsText)"
            }
            throw fail(number, message)
        }
        let sectionName = sectionKind(section)
        let where_ = sectionTitle(section)
        let valid = ConfigSection.named(sectionName)!.keys
        guard valid.contains(key) else {
            var message = "unknown key \(quoted(key)) in \(where_); valid keys: \(valid.joined(separator: ", "))"
            if let hint = suggestion(key, among: valid) {
                message += "; did you mean '\(hint)'?"
            } else if let homes = Self.homes(of: key) {
                message += " ('\(key)' belongs in \(homes))"
            }
            throw fail(number, message)
        }
        if let first = keyLines[key] {
            throw fail(number, "duplicate key '\(key)' in \(where_) (first set at line \(first))")
        }
        keyLines[key] = number
        if value.isEmpty && key != "channel_prefix" {
            throw fail(number, "empty value for '\(key)' in \(where_); expected \(expectation(key))")
        }

        switch section {
        case .cluster:
            if key == "fanout" {
                guard let kind = FanoutKind(rawValue: value) else {
                    throw fail(number, "bad fanout \(quoted(value)); expected mesh or redis")
                }
                config.fanout = kind
                fanoutLine = number
            } else if key == "drain_timeout" {
                config.drainTimeout = try milliseconds(value, key: key, in: where_, number: number)
            } else if key == "log_level" {
                let level = value.lowercased()
                guard ClusterConfig.logLevels.contains(level) else {
                    throw fail(number, "bad log_level \(quoted(value)) in [cluster]; expected one of \(ClusterConfig.logLevels.joined(separator: ", "))")
                }
                config.logLevel = level
            } else {
                let other = key == "secret" ? "secret_file" : "secret"
                if let otherLine = keyLines[other] {
                    throw fail(number, "'\(key)' and '\(other)' (line \(otherLine)) are both set in [cluster]; set exactly one: secret_file = PATH reads the secret from a file")
                }
                if key == "secret" { config.secret = value } else { config.secretFile = value }
                config.secretLine = number
            }
        case .redis:
            if key == "url" {
                switch RedisURL.parse(value) {
                case .success(let url): config.redisURL = url
                case .failure(let message): throw fail(number, "bad redis url: \(message)")
                }
                redisURLLine = number
            } else if key == "mode" {
                guard let mode = RedisPubSubMode(rawValue: value) else {
                    throw fail(number, "bad mode \(quoted(value)) in [redis]; expected classic or sharded")
                }
                redisMode = mode
                redisModeLine = number
            } else if key.hasPrefix("tls_") {
                redisTLSFiles[key] = PathKey(value: value, line: number)
            } else if key == "channel_prefix" {
                config.channelPrefix = value
            } else {
                if key == "buffer_messages" {
                    config.redisBuffer.bufferMessages = try positiveInteger(value, key: key, in: where_, number: number)
                } else {
                    config.redisBuffer.bufferTime = try milliseconds(value, key: key, in: where_, number: number)
                }
            }
        case .engineio:
            if key == "allowed_origins" {
                config.engine.allowedOrigins = try parseOrigins(value, number: number)
                return
            }
            switch key {
            case "ping_interval": config.engine.pingInterval = try milliseconds(value, key: key, in: where_, number: number)
            case "ping_timeout": config.engine.pingTimeout = try milliseconds(value, key: key, in: where_, number: number)
            case "max_payload":
                config.engine.maxPayload = try positiveInteger(value, key: key, in: where_, number: number)
                maxPayloadLine = number
            case "upgrade_timeout": config.engine.upgradeTimeout = try milliseconds(value, key: key, in: where_, number: number)
            default: config.engine.connectTimeout = try milliseconds(value, key: key, in: where_, number: number)
            }
        case .limits:
            if key == "max_write_delay" {
                config.limits.maxWriteDelay = try milliseconds(value, key: key, in: where_, number: number)
                return
            }
            if key == "header_timeout" {
                config.limits.headerTimeout = try milliseconds(value, key: key, in: where_, number: number)
                return
            }
            let n = try positiveInteger(value, key: key, in: where_, number: number)
            switch key {
            case "username_max": config.limits.usernameMax = n
            case "text_max": config.limits.textMax = n
            case "roomid_max": config.limits.roomIDMax = n
            case "say_rate": config.limits.sayRate = n
            case "say_burst": config.limits.sayBurst = n
            case "outbound_buffer": config.limits.outboundBuffer = n
            case "max_sockets": config.limits.maxSockets = n
            case "fd_reserve": config.limits.fdReserve = n
            default: config.limits.maxConnections = n
            }
        case .mesh:
            switch key {
            case "tls":
                switch value {
                case "on": meshTLSOn = true
                case "off": meshTLSOn = false
                default: throw fail(number, "'tls' in [mesh] must be on or off, got \(quoted(value))")
                }
                meshTLSLine = number
            case "tls_ca", "tls_cert", "tls_key":
                meshTLSFiles[key] = PathKey(value: value, line: number)
            case "ping_interval": config.mesh.pingInterval = try milliseconds(value, key: key, in: where_, number: number)
            case "buffer_messages": config.mesh.bufferMessages = try positiveInteger(value, key: key, in: where_, number: number)
            case "buffer_ms": config.mesh.bufferTime = try milliseconds(value, key: key, in: where_, number: number)
            case "max_frame":
                config.mesh.maxFrame = try positiveInteger(value, key: key, in: where_, number: number)
                maxFrameLine = number
            default: config.mesh.reconnectMax = try milliseconds(value, key: key, in: where_, number: number)
            }
        case .recovery:
            switch key {
            case "enabled":
                switch value {
                case "on": config.recovery.enabled = true
                case "off": config.recovery.enabled = false
                default: throw fail(number, "'enabled' in [recovery] must be on or off, got \(quoted(value))")
                }
            case "max_disconnection": config.recovery.maxDisconnection = try milliseconds(value, key: key, in: where_, number: number)
            case "room_messages": config.recovery.roomMessages = try positiveInteger(value, key: key, in: where_, number: number)
            case "history_bytes": config.recovery.historyBytes = try positiveInteger(value, key: key, in: where_, number: number)
            default: config.recovery.catchUp = try milliseconds(value, key: key, in: where_, number: number)
            }
        case .node(let index):
            if key == "tls_cert" {
                drafts[index].tlsCert = value
                drafts[index].tlsCertLine = number
                return
            }
            if key == "tls_key" {
                drafts[index].tlsKey = value
                drafts[index].tlsKeyLine = number
                return
            }
            let address: HostPort
            switch HostPort.parse(value) {
            case .success(let hp): address = hp
            case .failure(let message): throw fail(number, "bad \(key) address: \(message)")
            }
            if key == "listen" {
                drafts[index].listen = address
                drafts[index].listenLine = number
            } else {
                drafts[index].mesh = address
                drafts[index].meshLine = number
            }
        }
    }

    // MARK: values

    /// A duration key: cluster.conf gives it as a whole number of milliseconds.
    private func milliseconds(_ value: String, key: String, in where_: String, number: Int) throws -> TimeAmount {
        .milliseconds(Int64(try positiveInteger(value, key: key, in: where_, number: number)))
    }

    private func positiveInteger(_ value: String, key: String, in where_: String, number: Int) throws -> Int {
        let unit = unitName(key)
        let utf8 = value.utf8
        let isDigits = utf8.allSatisfy { $0 >= 0x30 && $0 <= 0x39 }
        if isDigits {
            let significant = utf8.drop { $0 == 0x30 }
            if significant.isEmpty {
                if Self.zeroAllowedKeys.contains(key) { return 0 }
                throw fail(number, "'\(key)' in \(where_) must be a positive integer (\(unit)), got \(value)")
            }
            guard significant.count <= 10, let n = Int(value), n <= Self.maxNumber else {
                throw fail(number, "'\(key)' in \(where_) is too large: \(quoted(value)) (maximum \(Self.maxNumber))")
            }
            return n
        }
        if utf8.first == 0x2D, utf8.count > 1, utf8.dropFirst().allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) {
            throw fail(number, "'\(key)' in \(where_) must be \(numberKind(key)) (\(unit)), got \(quoted(value))")
        }
        let leadingDigits = utf8.prefix { $0 >= 0x30 && $0 <= 0x39 }.count
        if leadingDigits > 0 && utf8.dropFirst(leadingDigits).allSatisfy({ ($0 | 0x20) >= 0x61 && ($0 | 0x20) <= 0x7A }) {
            throw fail(number, "'\(key)' in \(where_) must be a plain integer in \(unit) without a unit suffix, got \(quoted(value))")
        }
        throw fail(number, "'\(key)' in \(where_) must be \(numberKind(key)) (\(unit)), got \(quoted(value))")
    }

    /// Keys whose 0 means something: max_write_delay = 0 turns write pacing off,
    /// max_sockets = 0 derives the cap from the descriptor limit.
    private static let zeroAllowedKeys: Set<String> = ["max_write_delay", "max_sockets"]

    private func numberKind(_ key: String) -> String {
        Self.zeroAllowedKeys.contains(key) ? "a whole number" : "a positive integer"
    }

    private func unitName(_ key: String) -> String {
        switch key {
        case "ping_interval", "ping_timeout", "upgrade_timeout", "connect_timeout", "buffer_ms", "reconnect_max", "drain_timeout", "max_write_delay", "header_timeout", "max_disconnection", "catch_up": return "milliseconds"
        case "fd_reserve": return "descriptors"
        case "max_sockets": return "sockets"
        case "max_payload", "outbound_buffer", "max_frame", "history_bytes": return "bytes"
        case "buffer_messages", "room_messages": return "messages"
        case "username_max", "text_max", "roomid_max": return "characters"
        case "say_rate": return "says per second"
        case "say_burst": return "says"
        default: return "connections"
        }
    }

    private func expectation(_ key: String) -> String {
        switch key {
        case "fanout": return "mesh or redis"
        case "secret": return "the shared mesh key (any non-empty string)"
        case "secret_file": return "the path of a file holding the shared mesh key"
        case "tls", "enabled": return "on or off"
        case "tls_ca", "tls_cert", "tls_key": return "the path of a PEM file"
        case "url": return "redis://[user:]password@host[:port][/db] or redis+cluster://[user:]password@host:port[,host:port...]"
        case "mode": return "classic or sharded"
        case "log_level": return "one of \(ClusterConfig.logLevels.joined(separator: ", "))"
        case "allowed_origins": return "'*' or a list of origins such as http://localhost:6001"
        case "listen", "mesh": return "host:port, e.g. 127.0.0.1:6001"
        default: return "\(numberKind(key)) (\(unitName(key)))"
        }
    }

    /// `*` (any origin, returned as nil) or a space/comma separated list of
    /// `http(s)://host[:port]`, lowercased and without a trailing slash, as browsers
    /// send them in the Origin header.
    private func parseOrigins(_ value: String, number: Int) throws -> [String]? {
        if value == "*" { return nil }
        let items = value.split { $0 == " " || $0 == "\t" || $0 == "," }
        if items.isEmpty {
            throw fail(number, "empty value for 'allowed_origins' in [engineio]; expected \(expectation("allowed_origins"))")
        }
        var origins: [String] = []
        for item in items {
            if item == "*" {
                throw fail(number, "'*' in allowed_origins cannot be combined with other origins; use '*' alone to allow all")
            }
            let lowered = item.lowercased()
            let scheme: String
            if lowered.hasPrefix("http://") {
                scheme = "http://"
            } else if lowered.hasPrefix("https://") {
                scheme = "https://"
            } else {
                throw fail(number, "bad origin \(quoted(item)) in allowed_origins; expected http://host[:port] or https://host[:port]")
            }
            var rest = lowered.dropFirst(scheme.count)
            if rest.hasSuffix("/") { rest = rest.dropLast() }
            if rest.contains("/") || rest.contains("?") || rest.contains("#") || rest.contains("@") {
                throw fail(number, "bad origin \(quoted(item)) in allowed_origins: an origin is scheme://host[:port] with no path, query or user")
            }
            let hasPort = rest.hasPrefix("[") ? rest.contains("]:") : rest.contains(":")
            let problem: String?
            if hasPort {
                if case .failure(let message) = HostPort.parse(String(rest)) { problem = message.message } else { problem = nil }
            } else if rest.hasPrefix("[") {
                if rest.hasSuffix("]") {
                    if case .failure(let message) = HostAddress.parse(rest.dropFirst().dropLast(), bracketed: true) { problem = message.message } else { problem = nil }
                } else {
                    problem = "missing ']' after the IPv6 address"
                }
            } else if case .failure(let message) = HostAddress.parse(rest, bracketed: false) {
                problem = message.message
            } else {
                problem = nil
            }
            if let problem {
                throw fail(number, "bad origin \(quoted(item)) in allowed_origins: \(problem)")
            }
            origins.append(scheme + rest)
        }
        return origins
    }

    // MARK: whole-file rules

    private struct AddressUse {
        var address: HostPort
        var kind: HostAddress
        var role: String
        var node: String
        var line: Int
        var what: String { "\(role) of node '\(node)'" }
    }

    private mutating func finish() throws -> ClusterConfig {
        if drafts.isEmpty {
            throw fail(0, "no [node NAME] section: a cluster needs at least one node, e.g. [node a1] with listen = 127.0.0.1:6001")
        }
        var uses: [AddressUse] = []
        for draft in drafts {
            guard let listen = draft.listen else {
                throw fail(draft.line, "node '\(draft.name)' has no listen address; add 'listen = host:port', e.g. listen = 127.0.0.1:6001")
            }
            uses.append(AddressUse(address: listen, kind: HostAddress.classify(listen.host), role: "listen", node: draft.name, line: draft.listenLine))
            if let mesh = draft.mesh {
                uses.append(AddressUse(address: mesh, kind: HostAddress.classify(mesh.host), role: "mesh", node: draft.name, line: draft.meshLine))
            }
            config.nodes.append(NodeEntry(name: draft.name, listen: listen, mesh: draft.mesh, line: draft.line,
                                          clientTLS: try clientTLS(of: draft)))
        }
        try checkAddressesUnique(uses.sorted { $0.line < $1.line })

        // With mesh fanout every node must be reachable by every other one, or rooms
        // would silently split between nodes.
        if config.fanout == .mesh && drafts.count > 1,
           let isolated = drafts.first(where: { $0.mesh == nil }) {
            throw fail(isolated.line, "node '\(isolated.name)' has no mesh address, but fanout = mesh with \(drafts.count) nodes needs one on every node; add 'mesh = host:port', e.g. mesh = 127.0.0.1:7001")
        }
        if config.fanout == .redis && config.redisURL == nil {
            throw fail(fanoutLine, "fanout = redis needs a Redis server: add [redis] with url = redis://[user:]password@host[:port][/db]")
        }
        try finishMeshTLS()
        try finishRedisTLS()
        try finishRedisMode()
        if config.secret == nil && config.secretFile == nil,
           let exposed = uses.filter({ $0.role == "mesh" && !$0.kind.isLoopback }).min(by: { $0.line < $1.line }) {
            throw fail(exposed.line, "mesh address \(exposed.address) of node '\(exposed.node)' is not loopback, so [cluster] needs 'secret = ...' or 'secret_file = PATH' (the shared key that authenticates mesh links; `chatmesh gen-secret` makes one)")
        }
        try checkFrameFitsPayload()
        try config.checkSecretStrength(file: file)
        return config
    }

    /// `[node NAME] tls_cert` and `tls_key` come as a pair.
    private func clientTLS(of draft: NodeDraft) throws -> ClientTLSSettings? {
        switch (draft.tlsCert, draft.tlsKey) {
        case (nil, nil):
            return nil
        case (let cert?, let key?):
            return ClientTLSSettings(certFile: cert, keyFile: key, line: min(draft.tlsCertLine, draft.tlsKeyLine),
                                     certLine: draft.tlsCertLine, keyLine: draft.tlsKeyLine)
        case (_?, nil):
            throw fail(draft.tlsCertLine, "'tls_cert' in [node \(draft.name)] needs 'tls_key' (the certificate's private key) too: HTTPS on listen takes both or neither")
        case (nil, _?):
            throw fail(draft.tlsKeyLine, "'tls_key' in [node \(draft.name)] needs 'tls_cert' (its certificate) too: HTTPS on listen takes both or neither")
        }
    }

    /// `[mesh] tls = on` needs all three files; the files without `tls = on` would be ignored,
    /// which an operator who set them surely did not mean.
    private mutating func finishMeshTLS() throws {
        let fileKeys = ["tls_ca", "tls_cert", "tls_key"]
        if meshTLSOn == true {
            let missing = fileKeys.filter { meshTLSFiles[$0] == nil }
            if !missing.isEmpty {
                throw fail(meshTLSLine, "tls = on in [mesh] needs tls_ca, tls_cert and tls_key; missing: \(missing.joined(separator: ", ")) (`chatmesh gen-certs` makes the files and prints the lines)")
            }
            let ca = meshTLSFiles["tls_ca"]!, cert = meshTLSFiles["tls_cert"]!, key = meshTLSFiles["tls_key"]!
            config.mesh.tls = MeshTLSSettings(caFile: ca.value, certFile: cert.value, keyFile: key.value, line: meshTLSLine,
                                              caLine: ca.line, certLine: cert.line, keyLine: key.line)
            return
        }
        if let stray = fileKeys.compactMap({ k in meshTLSFiles[k].map { (k, $0) } }).min(by: { $0.1.line < $1.1.line }) {
            let state = meshTLSOn == false ? "tls = off (line \(meshTLSLine))" : "tls is off (the default)"
            throw fail(stray.1.line, "'\(stray.0)' in [mesh] is set, but \(state); add 'tls = on' to [mesh] or remove it")
        }
    }

    /// `[redis] tls_*` belong to a `rediss://` url; cert and key come as a pair.
    private mutating func finishRedisTLS() throws {
        let set = ["tls_ca", "tls_cert", "tls_key"].compactMap { k in redisTLSFiles[k].map { (k, $0) } }
        if let first = set.min(by: { $0.1.line < $1.1.line }), config.redisURL?.tls != true {
            let url = config.redisURL == nil ? "[redis] has no url" : "the url at line \(redisURLLine) is \(config.redisURL!.scheme)://"
            let tlsScheme = config.redisURL?.cluster == true ? "rediss+cluster://" : "rediss://"
            throw fail(first.1.line, "'\(first.0)' in [redis] is only for TLS, but \(url); use a \(tlsScheme) url or remove it")
        }
        guard config.redisURL?.tls == true else { return }
        let ca = redisTLSFiles["tls_ca"], cert = redisTLSFiles["tls_cert"], key = redisTLSFiles["tls_key"]
        if let cert, key == nil {
            throw fail(cert.line, "'tls_cert' in [redis] needs 'tls_key' (the client certificate's private key) too: both or neither")
        }
        if let key, cert == nil {
            throw fail(key.line, "'tls_key' in [redis] needs 'tls_cert' (its client certificate) too: both or neither")
        }
        config.redisTLS = RedisTLSSettings(caFile: ca?.value, certFile: cert?.value, keyFile: key?.value, line: redisURLLine,
                                           caLine: ca?.line ?? 0, certLine: cert?.line ?? 0, keyLine: key?.line ?? 0)
    }

    /// Sharded pub/sub exists only on a Redis Cluster; unset, a cluster url means sharded.
    private mutating func finishRedisMode() throws {
        let cluster = config.redisURL?.cluster == true
        if redisMode == .sharded && !cluster {
            let url = config.redisURL == nil ? "[redis] has no url" : "the url at line \(redisURLLine) is \(config.redisURL!.scheme)://"
            throw fail(redisModeLine, "mode = sharded needs a Redis Cluster url (redis+cluster://...), but \(url); remove mode or use mode = classic")
        }
        config.redisMode = redisMode ?? (cluster ? .sharded : .classic)
    }

    /// A client message travels between nodes inside one PUB frame (payload plus room,
    /// origin and sequence), so the mesh frame limit must leave room for the largest one.
    /// Only the mesh carries PUB frames; with Redis fanout the rule does not apply.
    private func checkFrameFitsPayload() throws {
        guard config.fanout == .mesh else { return }
        let needed = config.engine.maxPayload + MeshSettings.frameOverhead
        guard config.mesh.maxFrame <= needed else { return }
        if maxFrameLine > 0 || maxPayloadLine == 0 {
            throw fail(maxFrameLine, "'max_frame' in [mesh] is \(config.mesh.maxFrame) bytes, but must be larger than [engineio] max_payload + \(MeshSettings.frameOverhead) = \(needed) bytes, so the largest client message fits in one mesh frame; set max_frame = \(needed + 1) or more")
        }
        throw fail(maxPayloadLine, "'max_payload' in [engineio] is \(config.engine.maxPayload) bytes, too large for a mesh frame: [mesh] max_frame (default \(config.mesh.maxFrame) bytes) must be larger than max_payload + \(MeshSettings.frameOverhead); lower max_payload or set max_frame = \(needed + 1) or more")
    }

    /// Two sockets cannot bind the same address; also catches spellings of one address
    /// (localhost vs 127.0.0.1, ::1 vs 0:0:0:0:0:0:0:1) and a wildcard (0.0.0.0, ::)
    /// next to a loopback address on the same port.
    private func checkAddressesUnique(_ uses: [AddressUse]) throws {
        var exact: [String: AddressUse] = [:]
        var wildcardByPort: [Int: AddressUse] = [:]
        var loopbackByPort: [Int: AddressUse] = [:]
        var localhostByPort: [Int: AddressUse] = [:]
        for use in uses {
            let port = use.address.port
            let key = "\(use.kind.bindKey)|\(port)"
            if let first = exact[key] {
                throw fail(use.line, "address \(use.address) (\(use.what)) is already used by the \(first.what) at line \(first.line); every listen and mesh address must be unique")
            }
            var overlap: AddressUse?
            if use.kind.isWildcard {
                overlap = wildcardByPort[port] ?? loopbackByPort[port]
            } else if use.kind.isLoopback {
                overlap = wildcardByPort[port] ?? (use.kind.isLocalhostName ? loopbackByPort[port] : localhostByPort[port])
            }
            if let first = overlap {
                throw fail(use.line, "address \(use.address) (\(use.what)) overlaps \(first.address) (\(first.what), line \(first.line)): both would bind port \(port) on the same host")
            }
            exact[key] = use
            if use.kind.isWildcard, wildcardByPort[port] == nil { wildcardByPort[port] = use }
            if use.kind.isLoopback, loopbackByPort[port] == nil { loopbackByPort[port] = use }
            if use.kind.isLocalhostName, localhostByPort[port] == nil { localhostByPort[port] = use }
        }
    }

    // MARK: helpers

    private func sectionKind(_ section: Section) -> String {
        switch section {
        case .cluster: return "cluster"
        case .redis: return "redis"
        case .engineio: return "engineio"
        case .limits: return "limits"
        case .mesh: return "mesh"
        case .recovery: return "recovery"
        case .node: return "node"
        }
    }

    private func sectionTitle(_ section: Section) -> String {
        if case .node(let i) = section { return "[node \(drafts[i].name)]" }
        return "[\(sectionKind(section))]"
    }

    private func nodeNameProblem(_ name: String) -> String? {
        let ok = name.utf8.allSatisfy { b in
            (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || b == 0x5F || b == 0x2E || b == 0x2D
        }
        if ok && name.utf8.count <= Self.maxNodeNameLength { return nil }
        return "invalid node name \(quoted(name)): use 1-\(Self.maxNodeNameLength) characters of A-Z a-z 0-9 _ . -"
    }

    /// A valid name that differs from `word` only in case or '-' versus '_'.
    private func suggestion(_ word: String, among candidates: [String]) -> String? {
        func norm(_ s: String) -> String {
            String(s.lowercased().map { $0 == "-" ? "_" : $0 })
        }
        let n = norm(word)
        return candidates.first { norm($0) == n && $0 != word }
    }
}

private func isBlank(_ b: UInt8) -> Bool { b == 0x20 || b == 0x09 }

private func trimmed(_ s: ArraySlice<UInt8>) -> ArraySlice<UInt8> {
    var s = s
    while let f = s.first, isBlank(f) { s = s.dropFirst() }
    while let l = s.last, isBlank(l) { s = s.dropLast() }
    return s
}

/// Slices split at ASCII bytes of valid UTF-8 are themselves valid UTF-8.
private func string(_ s: ArraySlice<UInt8>) -> String { String(decoding: s, as: UTF8.self) }

private func hexByte(_ b: UInt8) -> String {
    let digits = Array("0123456789ABCDEF")
    return "0x\(digits[Int(b >> 4)])\(digits[Int(b & 0xF)])"
}
