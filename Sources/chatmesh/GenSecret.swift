import ArgumentParser

struct GenSecret: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gen-secret",
        abstract: "Print a new random 256-bit mesh secret (64 hex characters).",
        discussion: """
        From the system's CSPRNG (getrandom). Store it where only the node's user can read it, \
        e.g. `umask 077; chatmesh gen-secret > /etc/chatmesh/secret`, and name the file in \
        cluster.conf: [cluster] secret_file = /etc/chatmesh/secret (or paste it as secret = ...).
        """
    )

    func run() throws {
        print(Self.newSecret())
    }

    /// 32 bytes from `SystemRandomNumberGenerator`, which on Linux reads getrandom(2): a
    /// cryptographically secure source, as a mesh key needs.
    static func newSecret() -> String {
        var generator = SystemRandomNumberGenerator()
        let digits = Array("0123456789abcdef")
        var text = ""
        for _ in 0..<32 {
            let byte = UInt8.random(in: .min ... .max, using: &generator)
            text.append(digits[Int(byte >> 4)])
            text.append(digits[Int(byte & 0x0F)])
        }
        return text
    }
}
