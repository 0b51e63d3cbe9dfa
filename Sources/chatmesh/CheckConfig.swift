import ArgumentParser
import ClusterConfig
#if canImport(Glibc)
import Glibc
#endif

struct CheckConfig: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-config",
        abstract: "Validate a cluster.conf and print a summary.",
        discussion: "Exits 0 and prints a summary when the file is valid; otherwise prints FILE:LINE: what is wrong, and exits 1."
    )

    @Argument(help: "Path of cluster.conf.")
    var file: String

    func run() throws {
        do {
            let config = try ClusterConfig.load(path: file)
            print(config.summary())
        } catch {
            printError("\(error)")
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
