import ArgumentParser
import ClusterConfig
import ClusterSecurity
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

    func run() throws {
        do {
            if let diff {
                try printDiff(from: diff)
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
        } catch let exit as ExitCode {
            throw exit
        } catch {
            printError("\(error)")
            throw ExitCode(1)
        }
    }

    /// `--diff OLD FILE`: the changes, one a line. Errors are thrown as in `run`.
    private func printDiff(from oldFile: String) throws {
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
