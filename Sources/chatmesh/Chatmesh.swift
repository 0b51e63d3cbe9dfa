import ArgumentParser

@main
struct Chatmesh: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chatmesh",
        abstract: "A Socket.IO-compatible, multi-room chat server cluster.",
        discussion: """
        Clients connect with any Socket.IO v4/v5 client (or the page at /) to \
        /socket.io/?roomid=ROOM, emit `join {username}` and `say {text}`, and receive `message` \
        events. Every node is described by one cluster.conf; see README.md.
        """,
        subcommands: [Serve.self, Cluster.self, CheckConfig.self, NginxConf.self, Bench.self, GenSecret.self, GenCerts.self]
    )
}
