import ChatCore
import Logging
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

    /// A message on `channel`: its room's broadcast, counted as received, or nil when the
    /// channel is not one of ours (another `channel_prefix`) or the payload is not chat JSON
    /// (counted as rejected and logged).
    static func broadcast(channel: String, payload: ByteBuffer, channelPrefix: String,
                          metrics: RedisMetrics, logger: Logger) -> ChatBroadcast? {
        guard channel.hasPrefix(channelPrefix) else { return nil }
        let room = String(channel.dropFirst(channelPrefix.count))
        metrics.received.increment()
        guard let broadcast = broadcast(room: room, payload: payload) else {
            metrics.rejectedPayloads.increment()
            logger.warning("ignoring a Redis message that is not chat JSON", metadata: ["channel": "\(channel.prefix(128))"])
            return nil
        }
        return broadcast
    }
}
