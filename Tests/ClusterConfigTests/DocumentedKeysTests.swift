@testable import ClusterConfig
import Foundation
import NIOCore
import Testing

/// docs/CONFIG.md is the one reference of cluster.conf and README.md lists its keys in a
/// compact table: both must name exactly the keys the parser accepts (`ConfigSection.all`,
/// which its unknown-key check reads), each with the default a node really uses.
@Suite struct DocumentedKeysTests {
    /// What a document says a key is when it is absent from the file.
    enum DocumentedDefault: Equatable, CustomStringConvertible {
        /// A value, written as cluster.conf would spell it.
        case value(String)
        /// "none": unset.
        case unset
        /// "empty": the empty string.
        case empty
        /// "required": a file without it is refused.
        case required

        init?(word: String) {
            switch word {
            case "none": self = .unset
            case "empty": self = .empty
            case "required": self = .required
            default: return nil
            }
        }

        /// nil → unset, "" → empty.
        init(_ text: String?) {
            switch text {
            case nil: self = .unset
            case ""?: self = .empty
            case let text?: self = .value(text)
            }
        }

        var description: String {
            switch self {
            case .value(let text): return "`\(text)`"
            case .unset: return "none"
            case .empty: return "empty"
            case .required: return "required"
            }
        }
    }

    struct DocumentedKey {
        var section: String
        var key: String
        /// nil when the document's default could not be read.
        var defaultValue: DocumentedDefault?
        var line: Int
        var id: String { "[\(section)] \(key)" }
    }

    // MARK: the repository's files

    static let repositoryRoot = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static func text(of relativePath: String) throws -> String {
        try String(contentsOf: repositoryRoot.appendingPathComponent(relativePath), encoding: .utf8)
    }

    static func cells(_ row: Substring) -> [String] {
        var cells = row.split(separator: "|", omittingEmptySubsequences: false)
            .map { $0.trimmingCharacters(in: .whitespaces) }
        if cells.first == "" { cells.removeFirst() }
        if cells.last == "" { cells.removeLast() }
        return cells
    }

    /// `[cluster]` → cluster, `[node NAME]` → node, from a heading or a table cell.
    static func sectionName(in text: String) -> String? {
        guard let open = text.firstIndex(of: "["), let close = text[open...].firstIndex(of: "]") else { return nil }
        return text[text.index(after: open)..<close].split(separator: " ").first.map(String.init)
    }

    /// The first code span of a cell (`` `25000` ms `` → 25000), else its first word.
    static func defaultValue(inCell cell: String) -> DocumentedDefault? {
        let spans = cell.split(separator: "`", omittingEmptySubsequences: false)
        if cell.hasPrefix("`"), spans.count >= 3 { return .value(String(spans[1])) }
        let word = cell.prefix { $0.isLetter }
        return DocumentedDefault(word: String(word))
    }

    /// docs/CONFIG.md: a `## \`[section]\`` heading, then rows `| \`key\` | default | meaning |`.
    static func configReference() throws -> [DocumentedKey] {
        var section: String?
        var keys: [DocumentedKey] = []
        for (index, line) in try text(of: "docs/CONFIG.md").split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            if line.hasPrefix("#") {
                section = line.hasPrefix("## ") ? sectionName(in: String(line)) : nil
                continue
            }
            guard let section, line.hasPrefix("| `") else { continue }
            let row = cells(line)
            guard row.count == 3, !row[2].isEmpty else {
                keys.append(DocumentedKey(section: section, key: row.first ?? "", defaultValue: nil, line: index + 1))
                continue
            }
            let key = row[0].trimmingCharacters(in: CharacterSet(charactersIn: "`"))
            keys.append(DocumentedKey(section: section, key: key, defaultValue: defaultValue(inCell: row[1]), line: index + 1))
        }
        return keys
    }

    /// README.md: rows `| \`[section]\` | \`key = default\`, \`key\` (none; why), … |`.
    static func readmeTable() throws -> [DocumentedKey] {
        var keys: [DocumentedKey] = []
        for (index, line) in try text(of: "README.md").split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            guard line.hasPrefix("| `["), case let row = cells(line), row.count == 2,
                  let section = sectionName(in: row[0]) else { continue }
            for item in topLevelItems(row[1]) {
                // The item's first code span is `key = default` or `key`; a bare key's default
                // is the first word of the parenthesis after it: (none), (empty), (required).
                let pieces = item.split(separator: "`", omittingEmptySubsequences: false)
                guard item.hasPrefix("`"), pieces.count >= 3 else {
                    keys.append(DocumentedKey(section: section, key: item, defaultValue: nil, line: index + 1))
                    continue
                }
                let span = String(pieces[1])
                if let equals = span.range(of: " = ") {
                    keys.append(DocumentedKey(section: section, key: String(span[..<equals.lowerBound]),
                                              defaultValue: .value(String(span[equals.upperBound...])), line: index + 1))
                } else {
                    let after = pieces[2].trimmingCharacters(in: .whitespaces)
                    let word = after.hasPrefix("(") ? String(after.dropFirst().prefix { $0.isLetter }) : ""
                    keys.append(DocumentedKey(section: section, key: span, defaultValue: DocumentedDefault(word: word), line: index + 1))
                }
            }
        }
        return keys
    }

    /// `a, b (x, y), c` → ["a", "b (x, y)", "c"]: commas inside parentheses or code spans do not split.
    static func topLevelItems(_ cell: String) -> [String] {
        var items: [String] = []
        var current = ""
        var depth = 0
        var inCode = false
        for character in cell {
            switch character {
            case "`": inCode.toggle()
            case "(" where !inCode: depth += 1
            case ")" where !inCode: depth -= 1
            case "," where !inCode && depth == 0:
                items.append(current.trimmingCharacters(in: .whitespaces))
                current = ""
                continue
            default: break
            }
            current.append(character)
        }
        items.append(current.trimmingCharacters(in: .whitespaces))
        return items.filter { !$0.isEmpty }
    }

    // MARK: what the parser does

    /// The default of every key, read from a config that sets none of them; nil for a key this
    /// test does not know how to read (a new key: add it here and to the documentation).
    static func parserDefault(section: String, key: String) throws -> DocumentedDefault? {
        let config = try ClusterConfig.parse(oneNode, file: "minimal.conf")
        func number(_ n: Int) -> DocumentedDefault { .value(String(n)) }
        func number(_ t: TimeAmount) -> DocumentedDefault { number(t.wholeMilliseconds) }
        switch (section, key) {
        case ("cluster", "fanout"): return .value(config.fanout.rawValue)
        case ("cluster", "secret"): return DocumentedDefault(config.secret)
        case ("cluster", "secret_file"): return DocumentedDefault(config.secretFile)
        case ("cluster", "drain_timeout"): return number(config.drainTimeout)
        case ("cluster", "log_level"): return DocumentedDefault(config.logLevel)
        case ("redis", "url"): return DocumentedDefault(config.redisURL?.description)
        case ("redis", "channel_prefix"): return DocumentedDefault(config.channelPrefix)
        case ("redis", "mode"): return .value(config.redisMode.rawValue)
        case ("redis", "buffer_messages"): return number(config.redisBuffer.bufferMessages)
        case ("redis", "buffer_ms"): return number(config.redisBuffer.bufferTime)
        case ("redis", "tls_ca"): return DocumentedDefault(config.redisTLS?.caFile)
        case ("redis", "tls_cert"): return DocumentedDefault(config.redisTLS?.certFile)
        case ("redis", "tls_key"): return DocumentedDefault(config.redisTLS?.keyFile)
        case ("engineio", "ping_interval"): return number(config.engine.pingInterval)
        case ("engineio", "ping_timeout"): return number(config.engine.pingTimeout)
        case ("engineio", "max_payload"): return number(config.engine.maxPayload)
        case ("engineio", "upgrade_timeout"): return number(config.engine.upgradeTimeout)
        case ("engineio", "connect_timeout"): return number(config.engine.connectTimeout)
        case ("engineio", "allowed_origins"): return .value(config.engine.allowedOrigins?.joined(separator: " ") ?? "*")
        case ("limits", "username_max"): return number(config.limits.usernameMax)
        case ("limits", "text_max"): return number(config.limits.textMax)
        case ("limits", "roomid_max"): return number(config.limits.roomIDMax)
        case ("limits", "say_rate"): return number(config.limits.sayRate)
        case ("limits", "say_burst"): return number(config.limits.sayBurst)
        case ("limits", "outbound_buffer"): return number(config.limits.outboundBuffer)
        case ("limits", "max_connections"): return number(config.limits.maxConnections)
        case ("limits", "max_write_delay"): return number(config.limits.maxWriteDelay)
        case ("limits", "header_timeout"): return number(config.limits.headerTimeout)
        case ("limits", "max_sockets"): return number(config.limits.maxSockets)
        case ("limits", "fd_reserve"): return number(config.limits.fdReserve)
        case ("mesh", "ping_interval"): return number(config.mesh.pingInterval)
        case ("mesh", "buffer_messages"): return number(config.mesh.bufferMessages)
        case ("mesh", "buffer_ms"): return number(config.mesh.bufferTime)
        case ("mesh", "max_frame"): return number(config.mesh.maxFrame)
        case ("mesh", "reconnect_max"): return number(config.mesh.reconnectMax)
        case ("mesh", "tls"): return .value(config.mesh.tls == nil ? "off" : "on")
        case ("mesh", "tls_ca"): return DocumentedDefault(config.mesh.tls?.caFile)
        case ("mesh", "tls_cert"): return DocumentedDefault(config.mesh.tls?.certFile)
        case ("mesh", "tls_key"): return DocumentedDefault(config.mesh.tls?.keyFile)
        case ("recovery", "enabled"): return .value(config.recovery.enabled ? "on" : "off")
        case ("recovery", "max_disconnection"): return number(config.recovery.maxDisconnection)
        case ("recovery", "room_messages"): return number(config.recovery.roomMessages)
        case ("recovery", "history_bytes"): return number(config.recovery.historyBytes)
        case ("recovery", "catch_up"): return number(config.recovery.catchUp)
        case ("node", "listen"):
            let refused = configError("[node a1]\nmesh = 127.0.0.1:7001\n")?.message.contains("has no listen address") == true
            return refused ? .required : nil
        case ("node", "mesh"): return DocumentedDefault(config.nodes.first?.mesh?.description)
        case ("node", "tls_cert"): return DocumentedDefault(config.nodes.first?.clientTLS?.certFile)
        case ("node", "tls_key"): return DocumentedDefault(config.nodes.first?.clientTLS?.keyFile)
        default: return nil
        }
    }

    /// Both directions and every default: what `documented` lists is exactly the parser's keys.
    static func expectMatchesParser(_ documented: [DocumentedKey], in document: String) throws {
        var seen: Set<String> = []
        for entry in documented {
            #expect(seen.insert(entry.id).inserted, "\(document):\(entry.line): \(entry.id) is listed twice")
            let known = ConfigSection.named(entry.section)?.keys.contains(entry.key) == true
            #expect(known, "\(document):\(entry.line): \(entry.id) is documented, but the parser does not accept it")
            #expect(entry.defaultValue != nil, "\(document):\(entry.line): \(entry.id) has no readable default (a `value`, none, empty or required)")
        }
        for section in ConfigSection.all {
            for key in section.keys {
                let entry = documented.first { $0.section == section.name && $0.key == key }
                #expect(entry != nil, "\(document) does not list \(section.title) \(key), which the parser accepts")
                guard let entry, let documentedDefault = entry.defaultValue else { continue }
                let actual = try parserDefault(section: section.name, key: key)
                #expect(actual != nil, "DocumentedKeysTests.parserDefault does not know how to read \(section.title) \(key)")
                guard let actual else { continue }
                #expect(documentedDefault == actual, "\(document):\(entry.line): \(entry.id) is documented with default \(documentedDefault), but the parser uses \(actual)")
            }
        }
    }

    // MARK: tests

    @Test func configReferenceListsExactlyTheParsersKeysWithTheirDefaults() throws {
        let documented = try Self.configReference()
        #expect(!documented.isEmpty, "docs/CONFIG.md has no key tables")
        try Self.expectMatchesParser(documented, in: "docs/CONFIG.md")
    }

    @Test func readmeKeyTableListsExactlyTheParsersKeysWithTheirDefaults() throws {
        let documented = try Self.readmeTable()
        #expect(!documented.isEmpty, "README.md has no key table")
        try Self.expectMatchesParser(documented, in: "README.md")
    }

    @Test func configReferenceExamplesParse() throws {
        let blocks = try Self.text(of: "docs/CONFIG.md").components(separatedBy: "```ini\n").dropFirst()
            .map { $0.components(separatedBy: "```").first ?? "" }
        #expect(!blocks.isEmpty, "docs/CONFIG.md has no example")
        for block in blocks {
            #expect(throws: Never.self) { try ClusterConfig.parse(block, file: "docs/CONFIG.md example") }
        }
    }

    /// The file `make run` starts: every key it sets is one the parser accepts, with a valid value.
    @Test func shippedClusterConfParses() throws {
        let config = try ClusterConfig.load(path: Self.repositoryRoot.appendingPathComponent("cluster.conf").path)
        #expect(config.nodes.count >= 2)
    }

    /// The key list lives in one place: the other documents link it instead of repeating it.
    @Test func readmeAndInterfacesLinkTheConfigReference() throws {
        #expect(try Self.text(of: "README.md").contains("docs/CONFIG.md"))
        #expect(try Self.text(of: "docs/INTERFACES.md").contains("CONFIG.md"))
    }
}
