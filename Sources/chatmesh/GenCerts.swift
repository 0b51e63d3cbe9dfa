import ArgumentParser
import ClusterConfig
import ClusterSecurity

struct GenCerts: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gen-certs",
        abstract: "Make a cluster CA and a key + certificate per node for TLS mesh links.",
        discussion: """
        Writes DIR/ca.pem, DIR/ca-key.pem and, for every [node NAME] of the config, DIR/NAME.pem \
        and DIR/NAME-key.pem (ECDSA P-256; keys mode 0600). A node certificate names the node \
        (subjectAltName DNS:NAME, plus its mesh and listen IPs), is signed by the CA and serves as \
        TLS server and client. Prints the [mesh] lines that use the files (bare file names when \
        DIR is cluster.conf's own directory, as systemd credentials need). Existing files are \
        never overwritten. Copy to each host the CA, its own pair, and nothing else; keep \
        ca-key.pem offline.
        """
    )

    @Option(help: "Path of cluster.conf; its [node NAME] sections say which certificates to make.")
    var config: String

    @Option(help: "Directory to write into (created if missing).")
    var out: String

    @Option(help: "Days a node certificate is valid.")
    var days: Int = ClusterCertificates.nodeDays

    func run() throws {
        do {
            guard days > 0 && days <= 36_500 else { throw ValidationError("--days must be 1-36500") }
            let clusterConfig = try ClusterConfig.load(path: config)
            let written = try ClusterCertificates.write(for: clusterConfig, into: out, nodeDays: days)
            for path in written.files {
                printError("wrote \(path)")
            }
            printError("Copy ca.pem and each node's NAME.pem + NAME-key.pem to its host (keys stay mode 0600); keep ca-key.pem offline. Paste into cluster.conf:")
            print(written.meshLines(forConfigAt: config).joined(separator: "\n"))
        } catch let error as ValidationError {
            throw error
        } catch {
            printError("\(error)")
            throw ExitCode(1)
        }
    }
}
