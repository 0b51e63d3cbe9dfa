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

struct StandardError: TextOutputStream {
    mutating func write(_ string: String) {
        fputs(string, stderr)
    }
}
