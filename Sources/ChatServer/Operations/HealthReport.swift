import NIOCore
import SocketIO

/// `/healthz`: whether the node serves, and its load, as one JSON object. 200 with status "ok",
/// or 503 with status "not_ready" while the fanout cannot reach the rest of the cluster
/// (Redis mode without Redis), so load balancers send clients elsewhere.
struct HealthReport {
    let server: ServerContext

    var reply: HTTPReply {
        let uptime = Double((NIODeadline.now() - server.startedAt).nanoseconds) / 1e9
        let details = server.health()
        let json = JSONValue.object([
            ("status", .string(details.ready ? "ok" : "not_ready")),
            ("node", .string(server.nodeName)),
            ("uptime_s", .number((uptime * 10).rounded() / 10)),
            ("connections", .number(Double(server.sessions.count))),
            ("rooms", .number(Double(server.hub.roomCount))),
        ] + details.fields)
        return HTTPReply(status: details.ready ? .ok : .serviceUnavailable, contentType: "application/json", text: JSONWriter.string(json), headers: ["Cache-Control": "no-store"])
    }
}
