import ArgumentParser
import ClusterConfig
import ClusterSecurity
import RedisFanout
#if canImport(Glibc)
import Glibc
#endif

struct CheckConfig: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-config",
        abstract: "Validate a cluster.conf and print a summary, or what a reload would change.",
        discussion: """
        Exits 0 and prints a summary when the file is valid; otherwise prints FILE:LINE: what is \
        wrong, and exits 1. The TLS files it names (PEM certificates and keys) are checked too: \
        every node's, or with --node only that node's (on a host that holds only its own key).

        With --diff OLD, both files are loaded (OLD's TLS files are not checked: it is the one \
        running) and one line per change is printed instead of the summary, each live or \
        needing a restart (docs/CONFIG.md, "What a reload changes"); "no changes" when they \
        agree. With --node, a change is judged from that node's side. Relative paths are \
        resolved against each file's own directory, so keep NEW beside OLD to compare only \
        what changed.

        With --connect (off by default: without it check-config reads only files), a config \
        with fanout = redis also has every seed of [redis] url dialed as a node would (TLS and \
        AUTH included, \(RedisSeedProbe.defaultTimeout.nanoseconds / 1_000_000_000) s each, all at \
        once) and one line printed per seed: ok, warning (usable, probably not what was meant) \
        or unusable (unreachable, AUTH refused, not in cluster mode for a redis+cluster:// url, \
        CLUSTERDOWN); any unusable seed makes the exit status 1. With --diff, FILE's Redis is dialed.
        """
    )

    @Argument(help: "Path of cluster.conf (with --diff: the new one).")
    var file: String

    @Option(help: "Check only this node's TLS files (with --diff: judge changes from this node's side).")
    var node: String?

    @Option(help: ArgumentHelp("Print what reloading from OLD to FILE would change.", valueName: "OLD"))
    var diff: String?

    @Flag(name: .customLong("no-tls-files"), help: "Do not check the TLS files (certificates, keys) the config names.")
    var noTLSFiles = false

    @Flag(help: "Also dial the Redis that FILE names (fanout = redis): one line per seed saying whether a node can use it.")
    var connect = false

    func run() throws {
        do {
            if let diff {
                let new = try printDiff(from: diff)
                if connect { try probeRedis(of: new) }
                return
            }
            let config = try ClusterConfig.load(path: file)
            let names: [String]
            if let node {
                guard config.node(named: node) != nil else {
                    throw ConfigError(file: file, line: 0, message: "no [node \(node)] section; nodes: \(config.nodes.map(\.name).joined(separator: ", "))")
                }
                names = [node]
            } else {
                names = config.nodes.map(\.name)
            }
            let problems = noTLSFiles ? [] : TLSFileChecks.problems(in: config, configFile: file, nodes: names)
            if !problems.isEmpty {
                for problem in problems { printError("\(problem)") }
                throw ExitCode(1)
            }
            print(config.summary())
            if connect { try probeRedis(of: config) }
        } catch let exit as ExitCode {
            throw exit
        } catch {
            printError("\(error)")
            throw ExitCode(1)
        }
    }

    /// `--diff OLD FILE`: the changes, one a line; returns FILE's config. Errors are thrown
    /// as in `run`.
    private func printDiff(from oldFile: String) throws -> ClusterConfig {
        let old = try ClusterConfig.load(path: oldFile)
        let new = try ClusterConfig.load(path: file)
        if let node, old.node(named: node) == nil, new.node(named: node) == nil {
            let names = Set(old.nodes.map(\.name)).union(new.nodes.map(\.name)).sorted()
            throw ConfigError(file: file, line: 0, message: "no [node \(node)] section in either file; nodes: \(names.joined(separator: ", "))")
        }
        // The new file is the one about to be installed: its TLS files must be good now.
        let names = node.map { name in new.node(named: name) == nil ? [] : [name] } ?? new.nodes.map(\.name)
        let problems = noTLSFiles ? [] : TLSFileChecks.problems(in: new, configFile: file, nodes: names)
        if !problems.isEmpty {
            for problem in problems { printError("\(problem)") }
            throw ExitCode(1)
        }
        print(ConfigDiff(old: old, new: new, localNode: node))
        return new
    }

    /// `--connect`: one line per Redis seed (`RedisSeedProbe`); exit 1 when one is unusable,
    /// since a node would only log the same reason and keep retrying.
    private func probeRedis(of config: ClusterConfig) throws {
        guard config.fanout == .redis, let url = config.redisURL else {
            print("connect: fanout = \(config.fanout.rawValue), no Redis to dial")
            return
        }
        let reports: [RedisSeedProbe.Report]
        do {
            reports = try RedisSeedProbe.check(url: url, tls: config.redisTLS)
        } catch {
            throw ConfigError(file: file, line: error.line, message: "[redis] \(error.key): \(error.message)")
        }
        for report in reports { print(report) }
        let unusable = reports.filter { $0.verdict == .unusable }.count
        if unusable > 0 {
            printError("\(file): \(unusable) of \(reports.count) Redis seed\(reports.count == 1 ? "" : "s") unusable (see above)")
            throw ExitCode(1)
        }
    }
}

func printError(_ message: String) {
    var standardError = StandardError()
    print(message, to: &standardError)
}

/// Unbuffered, as stderr is; straight to fd 2 because Glibc's `stderr` is a global var that
/// Swift 6 will not touch.
struct StandardError: TextOutputStream {
    mutating func write(_ string: String) {
        writeAll(string, to: STDERR_FILENO)
    }
}

private func writeAll(_ text: String, to fd: Int32) {
    var bytes = Array(text.utf8)[...]
    while !bytes.isEmpty {
        let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        if written > 0 {
            bytes = bytes.dropFirst(written)
        } else if written < 0 && errno == EINTR {
            continue
        } else {
            return // the stream is closed: the message has nowhere to go
        }
    }
}
