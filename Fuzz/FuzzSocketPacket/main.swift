import EngineIO
import FuzzSupport
import SocketIO

// Socket.IO packets and binary attachment reassembly, driven the way the server drives them:
// a sequence of Engine.IO messages into a `SocketIOServerSession` (which decodes each text
// with `SocketPacketCodec` and feeds a `BinaryReassembler`), with a second, bare reassembler
// beside it to check what comes out. A decode error closes the client in the server, so here
// it starts a fresh session.
//
// Input: messages separated by 0xFF (never part of UTF-8). A message starting with 0x00 is a
// binary attachment (the rest of it); any other is a text message (skipped unless UTF-8).
//
// Promises: errors, never traps; a decoded packet re-encodes to text that decodes to the same
// packet; a reassembled packet holds no placeholder any more, and re-encoding it with
// `encodeWithAttachments` and reassembling that gives it back.

/// decode(encode(p)) == p, and encode is stable from there on. Not for a packet holding a
/// number beyond a double (`2[1e400]`): JavaScript's parser reads it as Infinity too, and its
/// JSON.stringify writes null, which may not fit the packet type any more (an event named null).
func checkRoundTrip(_ packet: SocketPacket, _ text: String) {
    let encoded = SocketPacketCodec.encode(packet)
    guard normalized(packet) == packet else { return }
    let again: SocketPacket
    do {
        again = try SocketPacketCodec.decode(encoded[...])
    } catch {
        expect(false, "\(text.debugDescription) re-encoded as \(encoded.debugDescription), which fails: \(error)")
        return
    }
    expect(again == normalized(packet), "\(text.debugDescription) -> \(encoded.debugDescription) decodes differently")
    expect(SocketPacketCodec.encode(again) == encoded, "encoding is not stable for \(text.debugDescription)")
}

/// What a packet becomes after a trip through text: JSON.stringify writes non-finite numbers
/// as null, as JavaScript does.
func normalized(_ packet: SocketPacket) -> SocketPacket {
    var copy = packet
    copy.data = packet.data.map(normalized)
    return copy
}

func normalized(_ value: JSONValue) -> JSONValue {
    switch value {
    case .number(let number) where !number.isFinite: return .null
    case .array(let elements): return .array(elements.map(normalized))
    case .object(let members): return .object(members.map { ($0.0, normalized($0.1)) })
    default: return value
    }
}

func checkReassembled(_ packet: SocketPacket) {
    let binary = packet.type == .binaryEvent || packet.type == .binaryAck
    if binary {
        expect(packet.data.map { !containsPlaceholder($0) } ?? true, "placeholder left after reassembly")
    } else {
        expect(packet.data.map { !containsBinary($0) } ?? true, "binary value in a text packet")
        return
    }
    // Re-encode with attachments, and reassemble that.
    let (header, attachments) = SocketPacketCodec.encodeWithAttachments(packet)
    guard !attachments.isEmpty else { return }
    var reassembler = BinaryReassembler()
    do {
        let decoded = try SocketPacketCodec.decode(header[...])
        expect(decoded.attachments == attachments.count, "header announces \(decoded.attachments) of \(attachments.count) attachments")
        let early = try reassembler.receive(decoded)
        expect(early == nil, "header completed without its attachments")
        var result: SocketPacket?
        for attachment in attachments { result = try reassembler.receive(attachment: attachment) }
        expect(result.map { $0.type == packet.type && $0.namespace == packet.namespace && $0.ackID == packet.ackID } ?? false,
               "re-encoded binary packet reassembles to another header")
        expect(result?.data.map(normalized) == packet.data.map(normalized), "re-encoded binary packet reassembles to other data")
    } catch {
        expect(false, "re-encoded binary packet \(header.debugDescription) fails: \(error)")
    }
}

func containsPlaceholder(_ value: JSONValue) -> Bool {
    switch value {
    case .object(let members):
        return value["_placeholder"] == .bool(true) || members.contains { containsPlaceholder($0.1) }
    case .array(let elements):
        return elements.contains(where: containsPlaceholder)
    default:
        return false
    }
}

func containsBinary(_ value: JSONValue) -> Bool {
    switch value {
    case .binary: return true
    case .object(let members): return members.contains { containsBinary($0.1) }
    case .array(let elements): return elements.contains(where: containsBinary)
    default: return false
    }
}

let served: Set<String> = ["/", "/admin"]

fuzz { input in
    var session = SocketIOServerSession(namespaces: served)
    var connected: Set<String> = []   // what the session must report, from its outputs alone
    var reassembler = BinaryReassembler()
    var connects = 0
    for message in parts(input, separator: 0xFF) {
        let payload: EnginePacket.Payload
        if message.first == 0 {
            payload = .binary(Array(message.dropFirst()))
        } else {
            guard let text = String(validating: message, as: UTF8.self) else { continue }
            payload = .text(text)
        }
        let complete: SocketPacket?
        do {
            switch payload {
            case .text(let text):
                let packet = try SocketPacketCodec.decode(text[...])
                checkRoundTrip(packet, text)
                complete = try reassembler.receive(packet)
            case .binary(let bytes):
                complete = try reassembler.receive(attachment: bytes)
            }
        } catch {
            complete = nil
            reassembler = BinaryReassembler()
        }
        if let complete { checkReassembled(complete) }

        do {
            switch try session.receive(payload) {
            case .connect(let namespace, _)?:
                expect(served.contains(namespace), "connect to unserved namespace \(namespace)")
                expect(!connected.contains(namespace), "repeated connect to \(namespace) reported")
                connects += 1
                let answer = session.acceptConnect(namespace: namespace, sid: "sid\(connects)")
                connected.insert(namespace)
                expect(try! SocketPacketCodec.decode(answer[...]).type == .connect, "connect answer does not decode")
            case .event(let name, let arguments, let ackID)?:
                expect(complete?.eventNameAndArguments.map { $0.name == name && $0.arguments == arguments } ?? false,
                       "session event differs from the reassembled packet")
                expect(ackID == complete?.ackID, "ack id differs")
                expect(complete.map { connected.contains($0.namespace) } ?? false, "event on a namespace not connected")
            case .reply(let text)?:
                expect(try! SocketPacketCodec.decode(text[...]).type == .connectError, "reply is not a CONNECT_ERROR")
            case .disconnect(let namespace)?:
                expect(connected.remove(namespace) != nil, "disconnect from \(namespace), which was not connected")
            case nil:
                break
            }
        } catch {
            // The server closes the client here; the next message meets a new session.
            session = SocketIOServerSession(namespaces: served)
            connected = []
        }
        for namespace in served.union(complete.map { [$0.namespace] } ?? []) {
            expect(session.isConnected(to: namespace) == connected.contains(namespace),
                   "session says \(namespace) is\(connected.contains(namespace) ? " not" : "") connected")
        }
        expect(session.hasConnections == !connected.isEmpty, "hasConnections differs from the namespaces connected")
    }
}
