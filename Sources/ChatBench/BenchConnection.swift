import NIOCore
import NIOHTTP1
import NIOWebSocket

/// A tiny xorshift generator for WebSocket masking keys (the server does not care how random
/// they are, and a getrandom() per frame would cost more than the frame).
struct XorShift: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed | 1 }
    mutating func next() -> UInt64 {
        state ^= state << 13
        state ^= state >> 7
        state ^= state << 17
        return state
    }
}

/// Sends the HTTP upgrade GET when the TCP connection is up; sees only a refused upgrade
/// (anything but 101), which it counts and closes. Removed once the upgrade succeeds.
final class UpgradeRequestHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundOut = HTTPClientRequestPart

    let host: String
    let uri: String
    let stats: LoopStats

    init(host: String, uri: String, stats: LoopStats) {
        self.host = host
        self.uri = uri
        self.stats = stats
    }

    func channelActive(context: ChannelHandlerContext) {
        var headers = HTTPHeaders()
        headers.add(name: "Host", value: host)
        headers.add(name: "Content-Length", value: "0")
        let head = HTTPRequestHead(version: .http1_1, method: .GET, uri: uri, headers: headers)
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .head = unwrapInboundIn(data) {
            stats.connectErrors += 1
            context.close(promise: nil)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }
}

/// One bench client after the WebSocket upgrade: Engine.IO open → `40` → `40{sid}` → join →
/// (sender: says at a rate or in a window) and, as a receiver, counts every broadcast say.
///
/// It reads and writes WebSocket frames itself (it replaces the frame decoder and encoder the
/// upgrader installs): frames are parsed in place in each read's buffer, with no per-frame
/// allocation or pipeline hop, because the client shares the machine with the server.
final class BenchConnection: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// Partial frame carried over between reads (rare: reads usually end on a frame boundary).
    private var carry: ByteBuffer?

    enum State { case upgrading, open, connected, joined, closed }

    let index: Int
    let room: Int
    let shared: BenchShared
    let stats: LoopStats
    let connectStartedAt: UInt64
    let username: [UInt8]
    let senders: Int
    private(set) var state = State.upgrading
    private var context: ChannelHandlerContext?
    private var rng: XorShift
    /// Per sender id: what this receiver saw of that sender's measured says.
    private(set) var trackers: [DeliveryTracker] = []
    private(set) var sender: SenderState?

    struct SenderState {
        var measuredSequence: UInt64 = 0
        var warmupSequence: UInt64 = 0
        var sentMeasured: UInt64 = 0
        var sentTotal: UInt64 = 0
        /// Σ room member count at send time over measured says.
        var expected: UInt64 = 0
        var inflight = 0
        var lastProgress: UInt64 = 0
        var stalls = 0
        var tick: UInt64 = 0
        var stopped = false
    }
    private var textScratch: [UInt8] = []

    init(index: Int, room: Int, shared: BenchShared, stats: LoopStats, connectStartedAt: UInt64) {
        self.index = index
        self.room = room
        self.shared = shared
        self.stats = stats
        self.connectStartedAt = connectStartedAt
        self.username = Array("\(shared.options.usernamePrefix)\(index)".utf8)
        self.senders = shared.options.idle == nil ? shared.options.senders : 0
        self.rng = XorShift(seed: UInt64(index) &* 0x9E37_79B9_7F4A_7C15 &+ connectStartedAt)
        if index < senders { sender = SenderState() }
    }

    // MARK: life cycle

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        state = .open
    }

    /// On the channel's close future: the accounting for every way a connection ends.
    func channelClosed() {
        switch state {
        case .upgrading, .open:
            shared.failed.add(1)
            shared.pending.add(-1)
        case .connected:
            if !shared.isEnding { shared.disconnects.add(1) }
        case .joined:
            shared.roomMembers[room].add(-1)
            if !shared.isEnding { shared.disconnects.add(1) }
        case .closed:
            break
        }
        state = .closed
        context = nil
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }

    // MARK: input

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = unwrapInboundIn(data)
        if var pending = carry {
            carry = nil
            pending.writeBuffer(&buffer)
            buffer = pending
        }
        let consumed = buffer.withUnsafeReadableBytes { parseFrames($0) }
        buffer.moveReaderIndex(forwardBy: consumed)
        if buffer.readableBytes > 0 {
            if buffer.readableBytes > (1 << 24) {
                context.close(promise: nil)  // a frame over 16 MiB: not a chat server
                return
            }
            carry = buffer
        }
    }

    /// Handles every complete frame in `p`; returns the bytes consumed.
    private func parseFrames(_ p: UnsafeRawBufferPointer) -> Int {
        var at = 0
        while p.count - at >= 2 {
            let b0 = p[at], b1 = p[at + 1]
            var header = 2
            var length = Int(b1 & 0x7F)
            if length == 126 {
                guard p.count - at >= 4 else { break }
                length = Int(p[at + 2]) << 8 | Int(p[at + 3])
                header = 4
            } else if length == 127 {
                guard p.count - at >= 10 else { break }
                var l: UInt64 = 0
                for i in 0..<8 { l = l << 8 | UInt64(p[at + 2 + i]) }
                guard l < (1 << 24) else { at = p.count; context?.close(promise: nil); break }
                length = Int(l)
                header = 10
            }
            let masked = b1 & 0x80 != 0
            if masked { header += 4 }
            guard p.count - at >= header + length else { break }
            let payload = UnsafeRawBufferPointer(rebasing: p[(at + header)..<(at + header + length)])
            at += header + length
            stats.framesIn += 1
            if masked { continue }  // servers do not mask; nothing of ours
            switch b0 & 0x0F {
            case 0x1:
                let packet = PacketScanner.scan(payload)
                handle(packet, payload: payload)
            case 0x9:
                var data = ByteBufferAllocator().buffer(capacity: payload.count)
                data.writeBytes(payload)
                send(opcode: 0xA, data)
            case 0x8:
                context?.close(promise: nil)
                return p.count
            default:
                break
            }
            if context == nil { return p.count }
        }
        return at
    }

    private func handle(_ packet: ScannedPacket, payload: UnsafeRawBufferPointer) {
        switch packet {
        case .say(let stamp):
            stats.sayFrames += 1
            let now = monotonicNanos()
            if let schedule = stats.schedule, now >= schedule.measureStart, now < schedule.measureEnd {
                stats.windowDeliveries += 1
            }
            guard let stamp, stamp.sender < senders else {
                stats.foreignSays += 1
                return
            }
            guard state == .joined else {
                // Not a member as far as `expected` knows (its own join echo never came):
                // counted apart, so that it cannot hide losses elsewhere.
                stats.unexpectedDeliveries += 1
                return
            }
            var duplicate = false
            if stamp.measured {
                if trackers.isEmpty { trackers = Array(repeating: DeliveryTracker(), count: senders) }
                if trackers[stamp.sender].record(stamp.sequence) != .duplicate {
                    let micros = now > stamp.sentNanos ? (now - stamp.sentNanos) / 1000 : 0
                    _ = stats.latency.record(max(micros, 1))
                } else {
                    duplicate = true
                }
            }
            // A duplicated echo must not widen the window.
            if stamp.sender == index && !duplicate { ownEcho(now: now) }
        case .ping:
            stats.pingsAnswered += 1
            sendText(StaticString("3"))
        case .join(let name):
            stats.joinFrames += 1
            if state == .connected {
                let mine = name.count == username.count && zip(payload[name], username).allSatisfy { $0 == $1 }
                if mine {
                    state = .joined
                    shared.roomMembers[room].add(1)
                    shared.joined.add(1)
                }
            }
        case .open:
            if state == .open { sendText(StaticString("40")) }
        case .connected:
            if state == .open {
                state = .connected
                let micros = (monotonicNanos() - connectStartedAt) / 1000
                _ = stats.connectTimes.record(max(micros, 1))
                shared.connected.add(1)
                shared.pending.add(-1)
                var join = Array(#"42["join",{"username":""#.utf8)
                join += username
                join += Array(#""}]"#.utf8)
                sendText(join)
            }
        case .connectError:
            stats.connectErrors += 1
            context?.close(promise: nil)
        case .error:
            stats.errorEvents += 1
        case .close:
            context?.close(promise: nil)
        case .otherMessage, .other:
            break
        }
    }

    // MARK: output

    private func sendText(_ text: StaticString) {
        guard let context else { return }
        var buffer = context.channel.allocator.buffer(capacity: text.utf8CodeUnitCount)
        buffer.writeStaticString(text)
        send(opcode: 0x1, buffer)
    }

    private func sendText(_ bytes: [UInt8]) {
        guard let context else { return }
        var buffer = context.channel.allocator.buffer(capacity: bytes.count)
        buffer.writeBytes(bytes)
        send(opcode: 0x1, buffer)
    }

    /// Writes one masked client frame (header, key, masked payload) as one buffer.
    private func send(opcode: UInt8, _ data: ByteBuffer, promise: EventLoopPromise<Void>? = nil) {
        guard let context else {
            promise?.succeed()
            return
        }
        let n = data.readableBytes
        var out = context.channel.allocator.buffer(capacity: n + 14)
        out.writeInteger(0x80 | opcode)
        if n < 126 {
            out.writeInteger(UInt8(0x80 | n))
        } else if n < 65536 {
            out.writeInteger(UInt8(0x80 | 126))
            out.writeInteger(UInt16(n))
        } else {
            out.writeInteger(UInt8(0x80 | 127))
            out.writeInteger(UInt64(n))
        }
        let key = UInt32(truncatingIfNeeded: rng.next())
        out.writeInteger(key)
        _ = data.withUnsafeReadableBytes { src in
            out.writeWithUnsafeMutableBytes(minimumWritableBytes: n) { dst in
                for i in 0..<n { dst[i] = src[i] ^ UInt8(truncatingIfNeeded: key >> (24 - 8 * UInt32(i & 3))) }
                return n
            }
        }
        context.writeAndFlush(wrapOutboundOut(out), promise: promise)
    }

    /// Ends the session as a client's `disconnect()` does: Socket.IO DISCONNECT (`41`), a
    /// WebSocket close frame, then the TCP close once both are written. A server with
    /// connection-state recovery on ends such a session at once; a dropped connection would be
    /// held for `max_disconnection` and its quit published then, into a later run's window.
    /// Returns the channel's close future (nil when already closed).
    func disconnect() -> EventLoopFuture<Void>? {
        guard let context else { return nil }
        let channel = context.channel
        if state == .connected || state == .joined { sendText(StaticString("41")) }
        var status = channel.allocator.buffer(capacity: 2)
        status.writeInteger(UInt16(1000))  // normal closure
        let written = channel.eventLoop.makePromise(of: Void.self)
        send(opcode: 0x8, status, promise: written)
        written.futureResult.whenComplete { _ in channel.close(promise: nil) }
        return channel.closeFuture
    }

    // MARK: sending says

    /// Called on this connection's loop once every client is up.
    func startSending(_ schedule: BenchSchedule) {
        guard sender != nil, let context, state == .joined else { return }
        let options = shared.options
        if options.rate > 0 {
            scheduleTick(schedule)
        } else {
            sender!.lastProgress = schedule.start
            // This connection lives on its loop: the isolated view takes closures that capture it.
            context.eventLoop.assumeIsolated().scheduleTask(deadline: deadline(schedule.start)) { [self] in
                fillWindow(schedule)
            }
            scheduleStallCheck(schedule)
        }
    }

    /// Window mode, every 500 ms while sending: echoes lost (or a server that drops) must not
    /// keep the window closed forever.
    private func scheduleStallCheck(_ schedule: BenchSchedule) {
        guard let context else { return }
        context.eventLoop.assumeIsolated().scheduleTask(in: .milliseconds(500)) { [self] in
            guard self.context != nil, let s = sender, !s.stopped else { return }
            let now = monotonicNanos()
            if s.inflight > 0, now - s.lastProgress > 2_000_000_000 {
                sender!.stalls += 1
                sender!.inflight = 0
                sender!.lastProgress = now
                fillWindow(schedule)
            }
            scheduleStallCheck(schedule)
        }
    }

    private func deadline(_ nanos: UInt64) -> NIODeadline {
        let now = monotonicNanos()
        return .now() + .nanoseconds(nanos > now ? Int64(nanos - now) : 0)
    }

    private var interval: UInt64 { UInt64(1e9 / shared.options.rate) }

    /// Rate mode: say number k is due at start + phase + k × interval; late ticks catch up, so
    /// the offered rate stays what was asked even when the loop is busy.
    private func scheduleTick(_ schedule: BenchSchedule) {
        guard let context, let s = sender, !s.stopped else { return }
        let phase = interval * UInt64(index % max(senders, 1)) / UInt64(max(senders, 1))
        let due = schedule.start + phase + s.tick * interval
        if due >= schedule.measureEnd {
            sender!.stopped = true
            return
        }
        context.eventLoop.assumeIsolated().scheduleTask(deadline: deadline(due)) { [self] in
            guard self.context != nil else { return }
            let now = monotonicNanos()
            var burst = 0
            while let s = sender, !s.stopped, burst < 1000 {
                let due = schedule.start + phase + s.tick * interval
                guard due <= now else { break }
                if due >= schedule.measureEnd { sender!.stopped = true; break }
                sendSay(now: now, schedule: schedule)
                sender!.tick += 1
                burst += 1
            }
            scheduleTick(schedule)
        }
    }

    private func fillWindow(_ schedule: BenchSchedule) {
        let window = shared.options.window
        while let s = sender, !s.stopped, s.inflight < window, context != nil {
            let now = monotonicNanos()
            if now >= schedule.measureEnd {
                sender!.stopped = true
                break
            }
            sendSay(now: now, schedule: schedule)
            sender!.inflight += 1
        }
    }

    private func ownEcho(now: UInt64) {
        guard sender != nil, shared.options.rate == 0, let schedule = stats.schedule else { return }
        if sender!.inflight > 0 { sender!.inflight -= 1 }
        sender!.lastProgress = now
        fillWindow(schedule)
    }

    private func sendSay(now: UInt64, schedule: BenchSchedule) {
        guard let context else { return }
        let measured = now >= schedule.measureStart
        var s = sender!
        let sequence: UInt64
        if measured {
            sequence = s.measuredSequence
            s.measuredSequence += 1
            s.sentMeasured += 1
            s.expected += UInt64(max(shared.roomMembers[room].load(), 0))
        } else {
            sequence = s.warmupSequence
            s.warmupSequence += 1
        }
        s.sentTotal += 1
        sender = s
        textScratch.removeAll(keepingCapacity: true)
        SayText.encode(SayStamp(measured: measured, sender: index, sequence: sequence, sentNanos: now),
                       payload: shared.options.payload, into: &textScratch)
        var buffer = context.channel.allocator.buffer(capacity: textScratch.count + 24)
        buffer.writeStaticString(#"42["say",{"text":""#)
        buffer.writeBytes(textScratch)
        buffer.writeStaticString(#""}]"#)
        send(opcode: 0x1, buffer)
    }

    /// This connection's share of the results (on its loop, at the end).
    func snapshot() -> ConnectionSnapshot {
        var snap = ConnectionSnapshot()
        for t in trackers {
            snap.received += t.received
            snap.duplicated += t.duplicated
            snap.reordered += t.reordered
        }
        if let s = sender {
            snap.sent = s.sentMeasured
            snap.sentTotal = s.sentTotal
            snap.expected = s.expected
            snap.stalls = s.stalls
            snap.senders = 1
        }
        return snap
    }
}

struct ConnectionSnapshot: Sendable {
    var received: UInt64 = 0
    var duplicated: UInt64 = 0
    var reordered: UInt64 = 0
    var sent: UInt64 = 0
    var sentTotal: UInt64 = 0
    var expected: UInt64 = 0
    var stalls = 0
    var senders = 0

    static func + (a: Self, b: Self) -> Self {
        Self(received: a.received + b.received, duplicated: a.duplicated + b.duplicated,
             reordered: a.reordered + b.reordered, sent: a.sent + b.sent, sentTotal: a.sentTotal + b.sentTotal,
             expected: a.expected + b.expected, stalls: a.stalls + b.stalls, senders: a.senders + b.senders)
    }
}
