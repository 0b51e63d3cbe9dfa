import NIOCore
import SocketIO

/// `/healthz`: whether the node serves, and its load, as one JSON object.
struct HealthReport {
    let context: ServerContext

    var reply: HTTPReply {
        let uptime = Double((NIODeadline.now() - context.startedAt).nanoseconds) / 1e9
        let json = JSONValue.object([
            ("status", .string("ok")),
            ("node", .string(context.nodeName)),
            ("uptime_s", .number((uptime * 10).rounded() / 10)),
            ("connections", .number(Double(context.sessions.count))),
            ("rooms", .number(Double(context.hub.roomCount))),
        ] + context.healthDetails())
        return HTTPReply(status: .ok, contentType: "application/json", text: JSONWriter.string(json), headers: ["Cache-Control": "no-store"])
    }
}
