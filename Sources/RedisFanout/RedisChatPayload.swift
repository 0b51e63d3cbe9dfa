import ChatCore
import NIOCore
import SocketIO

/// A message from Redis may come from any publisher (an original Node worker, `redis-cli`):
/// it is delivered only if it is the original JSON shape, re-serialized exactly as the Node
/// server's emit would send it. Shared by the single-node and the cluster fanout.
enum RedisChatPayload {
    /// The broadcast for `room`, or nil when `payload` is not chat JSON.
    static func broadcast(room: String, payload: ByteBuffer) -> ChatBroadcast? {
        guard let text = String(validating: payload.readableBytesView, as: UTF8.self),
              let value = try? JSONParser.parse(text[...]), value.isObject, value["event"]?.stringValue != nil,
              value["data"]?.isObject == true
        else { return nil }
        return ChatBroadcast(room: room, eventJSON: JSONWriter.string(value).utf8)
    }
}
