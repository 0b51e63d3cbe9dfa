import ChatCore
import ClusterConfig
import DequeModule
import EngineIO
import Logging
import NIOCore
import NIOHTTP1
import NIOWebSocket
import SocketIO

/// One client's Engine.IO session and everything above it (its Socket.IO connection and its
/// chat session). All state is touched on `eventLoop`, the loop of the connection that opened
/// the session; requests and frames that arrive on other loops hop here first.
///
/// Outbound data goes to whichever transport is primary: a queue drained by long-polling GETs,
/// or the WebSocket channel. Both are bounded by `outbound_buffer`: a client that stops reading
/// is cut off, and the room goes on.
final class EngineSession: RoomMember, HeartbeatWheel.Target, RecoverableSession, @unchecked Sendable {  // unchecked: state only on `eventLoop` (preconditions at entry); other loops hop here
    let sid: String
    let eventLoop: any EventLoop
    private let server: ServerContext
    /// The `roomid` query parameter, the only part of the query the session needs later (the
    /// whole query dictionary would cost every idle connection a few hundred bytes).
    private let roomID: String?
    /// Built when something is logged (rarely), not stored: an idle session stays small.
    private var logger: Logger {
        var logger = server.logger
        logger[metadataKey: "sid"] = "\(sid)"
        return logger
    }

    private var state: EngineSessionState
    private var socketIO = SocketIOServerSession()
    private var chat: ChatSession?
    private let shard: RoomShard

    // Long-polling: encoded packets waiting for a GET, and the GET waiting for packets.
    /// A Deque allocates nothing until the first packet: WebSocket sessions never use it.
    private var pollQueue = Deque<ByteBuffer>()
    private var pollQueueBytes = 0
    private var pendingPoll: HTTPResponder?

    // WebSocket: the primary transport once upgraded (or from the start), and an upgrade probe;
    // either may be a socket another node holds and relays here (docs/RELAY.md).
    private var webSocket: EngineWebSocket?
    private var probe: EngineWebSocket?
    /// Writes encoded frames to `webSocket` through its pipeline, when the socket is local and
    /// lives on this session's loop (otherwise frames go through `EngineWebSocket`, which hops
    /// loops or goes over the mesh).
    private var writer: WebSocketEngineHandler?
    private var probeWriter: WebSocketEngineHandler?

    /// The probe's writer arrives once its pipeline is set up, bound to the probe's loop: it is
    /// used only when that is this session's loop. Returns false if `channel` is not (or no
    /// longer) this session's probe.
    func probePipelineReady(_ channel: any Channel, writer: NIOLoopBound<WebSocketEngineHandler>) -> Bool {
        eventLoop.preconditionInEventLoop()
        guard probe?.isChannel(channel) == true else { return false }
        if channel.eventLoop === eventLoop { probeWriter = writer.value }
        return true
    }

    /// The heartbeat runs on the loop's wheel: the entry scheduled under the current generation
    /// is the live one (send a ping, or, while a pong is owed, give up on the client).
    private let heartbeats: HeartbeatWheel
    private var heartbeatGeneration: UInt32 = 0
    private var upgradeTimer: Scheduled<Void>?
    private var connectTimer: Scheduled<Void>?

    /// Set when the outbound bound was passed; the close follows on the next tick.
    private var cutOff = false

    // Connection-state recovery (`[recovery] enabled = on`; all unused when off).
    /// The session's private id, once its CONNECT was answered with one: what the store holds,
    /// ends or takes over when this connection goes.
    private var pid: String?
    /// A CONNECT is with the store (a new record, or a recovery that may wait for the mesh to
    /// catch up): the client is not answered yet, and a second CONNECT is ignored.
    private var connectPending = false
    /// Another connection recovered this session's pid: this one closes with neither a quit
    /// nor a hold, since the session lives on over there.
    private var takenOver = false
    /// The node drains: GETs get what is queued, then a 503.
    private var draining = false

    init(eventLoop: any EventLoop, transport: EngineRequest.Transport, query: [String: String], server: ServerContext) {
        self.sid = SessionID.make(ownerTag: server.nodeTag)
        self.eventLoop = eventLoop
        self.server = server
        self.roomID = query["roomid"]
        // The heartbeat times of the settings as of now: the session keeps them for its life
        // (its handshake announces them), even if a reload changes `[engineio]` meanwhile.
        let engine = server.engine
        self.state = EngineSessionState(transport: transport, heartbeat: EngineHeartbeat(
            pingIntervalMs: engine.pingInterval.wholeMilliseconds, pingTimeoutMs: engine.pingTimeout.wholeMilliseconds,
            openedAt: eventLoop.now.uptimeNanoseconds
        ))
        self.shard = server.hub.shard(for: eventLoop)
        self.heartbeats = server.heartbeatWheel(for: eventLoop)
    }

    /// The open packet's contents: the heartbeat times this session runs by (fixed when it
    /// was made), and the payload limit as of now.
    var handshake: EngineHandshake {
        EngineHandshake(
            sid: sid, upgrades: state.sendsOverPolling ? ["websocket"] : [],
            pingIntervalMs: Int(state.heartbeat.pingInterval / 1_000_000), pingTimeoutMs: Int(state.heartbeat.pingTimeout / 1_000_000),
            maxPayload: server.engine.maxPayload
        )
    }

    // MARK: Opening

    /// Starts the heartbeat and the Socket.IO connect deadline. For a WebSocket-born session the
    /// open packet goes out as its first frame; for polling it is the handshake GET's body.
    func open(webSocket channel: (any Channel)?, writer: WebSocketEngineHandler? = nil) {
        eventLoop.preconditionInEventLoop()
        if let channel {
            webSocket = .local(channel)
            self.writer = channel.eventLoop === eventLoop ? writer : nil
            send(handshake.openPacket)
        }
        armHeartbeat(at: state.heartbeat.deadline)
        connectTimer = eventLoop.scheduleTask(in: server.engine.connectTimeout) { [self] in
            if chat == nil, !socketIO.hasConnections {
                logger.debug("no Socket.IO connect in time")
                close(.transportClose)
            }
        }
        logger.debug("session opened", metadata: ["transport": "\(channel == nil ? "polling" : "websocket")"])
    }

    // MARK: Long-polling

    func handlePollGET(_ responder: HTTPResponder) {
        eventLoop.preconditionInEventLoop()
        checkHeartbeat()
        guard !state.isClosed else { return responder.send(.engineError(.unknownSid, headers: responder.extraHeaders)) }
        guard state.sendsOverPolling else { return responder.send(.engineError(.badRequest)) }
        if let overlapping = pendingPoll {
            // Two GETs at once: the Node server treats it as a broken client and closes the session.
            logger.info("overlapping polling GET")
            responder.send(.engineError(.badRequest))
            pendingPoll = nil
            overlapping.send(pollReply(PollingPayload.encode([EnginePacket(.close)])))
            close(.transportError)
            return
        }
        if draining {
            return answerDrainingPoll(responder)
        }
        if case .upgrading(probeAnswered: true) = state.phase, pollQueue.isEmpty {
            // The client is switching to WebSocket: release this poll at once. With packets
            // waiting (a ping among them) it gets them instead, as from the reference server:
            // a client that keeps polling through a probe that never completes must still
            // see the ping it has to answer, or the ping timeout ends its session.
            return responder.send(pollReply(EnginePacket.encodeText(.noop)))
        }
        pendingPoll = responder
        flushPollQueue()
    }

    func handlePollPOST(_ body: String, responder: HTTPResponder) {
        eventLoop.preconditionInEventLoop()
        checkHeartbeat()
        guard !state.isClosed else { return responder.send(.engineError(.unknownSid)) }
        guard state.sendsOverPolling else { return responder.send(.engineError(.badRequest)) }
        let packets: [EnginePacket]
        do {
            packets = try PollingPayload.decode(body)
        } catch {
            logger.info("bad polling payload", metadata: ["error": "\(error)"])
            server.metrics.countError("parse_error")
            responder.send(.engineError(.badRequest))
            close(.parseError)
            return
        }
        responder.send(HTTPReply(status: .ok, contentType: "text/html", text: "ok"))
        for packet in packets where !state.isClosed {
            receive(packet, from: .primary)
        }
    }

    /// The connection holding the pending GET went away.
    func pollConnectionClosed(_ channel: any Channel) {
        eventLoop.preconditionInEventLoop()
        guard let pending = pendingPoll, pending.isOn(channel) else { return }
        pendingPoll = nil
        if state.sendsOverPolling {
            close(.transportClose)
        }
    }

    /// A relayed GET held here ended on the relay's side. Its client went away: as a local
    /// polling connection closing. The link to the relay went down: the poll is dropped and the
    /// session lives on (its queue waits for the client's next GET, through any node).
    func relayedPollEnded(_ exchange: RelayExchange, why: RelayEnd) {
        eventLoop.preconditionInEventLoop()
        guard let pending = pendingPoll, pending.answers(exchange) else { return }
        pendingPoll = nil
        if why == .clientGone, state.sendsOverPolling {
            close(.transportClose)
        }
    }

    private func pollReply(_ payload: String) -> HTTPReply {
        HTTPReply(status: .ok, contentType: "text/plain; charset=UTF-8", text: payload)
    }

    /// At most this many packets per polling response: python-engineio's client refuses a
    /// payload of more than 16, so a busy room would otherwise drop every such client. The
    /// rest waits for the next GET, which the client sends at once.
    static let maxPacketsPerPoll = 16
    /// How long a closing WebSocket may take to get its close frame out before it is closed anyway.
    static let closeGrace = TimeAmount.seconds(2)

    private func flushPollQueue() {
        guard let responder = pendingPoll, !pollQueue.isEmpty else { return }
        pendingPoll = nil
        var body = ByteBufferAllocator().buffer(capacity: min(pollQueueBytes, 64 * 1024) + Self.maxPacketsPerPoll)
        for index in 0..<Self.maxPacketsPerPoll {
            guard let packet = pollQueue.popFirst() else { break }
            if index > 0 { body.writeInteger(UInt8(0x1E)) }
            body.writeImmutableBuffer(packet)
            pollQueueBytes -= packet.readableBytes
        }
        responder.send(HTTPReply(status: .ok, contentType: "text/plain; charset=UTF-8", body: body))
    }

    // MARK: WebSocket

    enum UpgradeClaim {
        /// The WebSocket is this session's probe.
        case probe
        /// The session is open but upgraded already, or upgrading through another probe. Like
        /// the reference server, the WebSocket handshake completes and the socket is then closed.
        case alreadyUpgraded
        /// The session is closed: the upgrade request gets the unknown-sid error.
        case closed
    }

    /// A WebSocket with this sid arrived to upgrade the session.
    func beginUpgrade(probe socket: EngineWebSocket) -> UpgradeClaim {
        eventLoop.preconditionInEventLoop()
        checkHeartbeat()
        guard !state.isClosed else { return .closed }
        guard state.beginUpgrade() else { return .alreadyUpgraded }
        probe = socket
        probeWriter = nil
        upgradeTimer = eventLoop.scheduleTask(in: server.engine.upgradeTimeout) { [self] in
            guard state.isUpgrading, let probe else { return }
            logger.debug("upgrade timed out")
            state.abortUpgrade()
            self.probe = nil
            probe.abandon()
        }
        return .probe
    }

    /// A WebSocket another node holds for this session arrived (relayed) to upgrade it. The
    /// relay answered the client's handshake already, so a socket that cannot be the probe
    /// is closed, as a local one upgraded too late is.
    func beginRelayedUpgrade(_ socket: RelayedEngineSocket) {
        switch beginUpgrade(probe: .relayed(socket)) {
        case .probe:
            break
        case .alreadyUpgraded, .closed:
            socket.close(code: .policyViolation)
        }
    }

    func receive(webSocketPacket packet: EnginePacket, on socket: EngineWebSocket) {
        eventLoop.preconditionInEventLoop()
        checkHeartbeat()
        if webSocket?.isSame(as: socket) == true {
            receive(packet, from: .primary)
        } else if probe?.isSame(as: socket) == true {
            receive(packet, from: .probe)
        }
    }

    func webSocketClosed(_ socket: EngineWebSocket) {
        eventLoop.preconditionInEventLoop()
        if webSocket?.isSame(as: socket) == true {
            webSocket = nil
            close(.transportClose)
        } else if probe?.isSame(as: socket) == true {
            probe = nil
            upgradeTimer?.cancel()
            state.abortUpgrade()
        }
    }

    // MARK: Inbound packets

    private func receive(_ packet: EnginePacket, from source: EngineSessionState.Source) {
        switch state.receive(packet, from: source, now: eventLoop.now.uptimeNanoseconds) {
        case .deliver(let payload):
            handleSocketIO(payload)
        case .answerProbe:
            probe.map { write(EnginePacket(.pong, .text("probe")), to: $0, writer: probeWriter) }
            if let responder = pendingPoll {
                pendingPoll = nil
                responder.send(pollReply(EnginePacket.encodeText(.noop)))
            }
        case .completeUpgrade:
            upgradeTimer?.cancel()
            webSocket = probe
            writer = probeWriter
            probe = nil
            probeWriter = nil
            if let responder = pendingPoll {
                pendingPoll = nil
                responder.send(pollReply(EnginePacket.encodeText(.noop)))
            }
            if let socket = webSocket {
                for packet in pollQueue { socket.write(WebSocketWire.textFrame(packet)) }
                socket.flush()
            }
            pollQueue.removeAll()
            pollQueueBytes = 0
            logger.debug("upgraded to websocket")
        case .abortProbe:
            upgradeTimer?.cancel()
            probe?.abandon()
            probe = nil
        case .heartbeat(let nextPing):
            armHeartbeat(at: nextPing)
        case .close(let reason):
            teardown(reason)
        case .none:
            break
        }
    }

    private func handleSocketIO(_ payload: EnginePacket.Payload) {
        let input: SocketIOServerSession.Input?
        do {
            input = try socketIO.receive(payload)
        } catch {
            // As the Node server does: a client that sends an undecodable packet is closed.
            logger.info("bad Socket.IO packet", metadata: ["error": "\(error)"])
            server.metrics.countError("parse_error")
            close(.parseError)
            return
        }
        switch input {
        case nil:
            break
        case .reply(let text):
            sendMessage(text)
        case .connect(let namespace, let auth):
            guard !connectPending else { return }
            if let error = server.chatLimits.value.validateRoomID(roomID) {
                server.metrics.countError(error.reason.rawValue)
                sendMessage(SocketIOServerSession.connectError(
                    namespace: namespace, message: error.message,
                    data: .object([("reason", .string(error.reason.rawValue))])
                ))
                return
            }
            // Dropped, not only cancelled: a kept `Scheduled` holds its promise and closure.
            connectTimer?.cancel()
            connectTimer = nil
            if let store = server.recovery {
                return connectRecoverable(namespace: namespace, request: RecoveryConnectRequest(auth: auth), store: store)
            }
            chat = ChatSession(
                roomID: roomID!, limits: server.chatLimits, hub: server.hub, shard: shard, member: self,
                now: { NIODeadline.now().uptimeNanoseconds }
            )
            sendMessage(socketIO.acceptConnect(namespace: namespace, sid: SessionID.make()))
        case .event(let name, let arguments, let ackID):
            guard let chat else { return }
            if let store = server.recovery, name == "join" {
                recordJoinAhead(of: arguments, chat: chat, store: store)
            }
            for reply in chat.handleEvent(name: name, arguments: arguments, ackID: ackID) {
                sendMessage(SocketPacketCodec.encode(reply))
            }
        case .disconnect:
            // The client's own disconnect ends its session: no recovery, the quit goes now
            // (with recovery, from the store, which knows whether a recovery elsewhere took
            // the session first: then there is nothing to end, and no quit).
            if endRecoverableSession() {
                chat?.detach()
            } else {
                chat?.leave()
            }
            chat = nil
        }
    }

    // MARK: Connection-state recovery

    /// Answers a CONNECT with recovery on: the store restores the session `request` names, or
    /// makes a new one. The store lives on its own loop (the fanout's); its answer comes back
    /// here, and until then the client is not answered (Socket.IO drops its events meanwhile).
    private func connectRecoverable(namespace: String, request: RecoveryConnectRequest, store: RecoveryStore) {
        connectPending = true
        let room = roomID!
        switch request {
        case .fresh:
            onStoreLoop(store) { [self] in
                let record = store.open(room: room, session: self)
                onSessionLoop { [self] in answerNewSession(record, namespace: namespace, store: store) }
            }
        case .badAuth, .badOffset:
            let reason: RecoveryFailure = request == .badAuth ? .badAuth : .badOffset
            onStoreLoop(store) { [self] in
                store.metrics.countAttempt()
                store.metrics.countFailure(reason)
                let record = store.open(room: room, session: self)
                onSessionLoop { [self] in answerNewSession(record, namespace: namespace, store: store) }
            }
        case .recover(let pid, let offset):
            onStoreLoop(store) { [self] in
                store.recover(pid: pid, offset: offset, room: room, session: self) { [self] outcome in
                    switch outcome {
                    case .recovered(let record, let missed, let snapshotAt):
                        // Inline when this session lives on the store's loop, else the next task
                        // here: either way it joins the room before any broadcast stamped after
                        // the snapshot reaches this loop, so each is sent once (replay or live).
                        onSessionLoop { [self] in
                            applyRecovery(record, missed: missed, snapshotAt: snapshotAt, namespace: namespace, store: store)
                        }
                    case .failed(let reason):
                        logger.debug("session not recovered", metadata: ["reason": "\(reason.rawValue)"])
                        let record = store.open(room: room, session: self)
                        onSessionLoop { [self] in answerNewSession(record, namespace: namespace, store: store) }
                    }
                }
            }
        }
    }

    /// A new session: `40{"sid","pid"}`; the client joins as without recovery.
    private func answerNewSession(_ record: SessionRecord, namespace: String, store: RecoveryStore) {
        connectPending = false
        guard !state.isClosed else {
            // Closed while the store made it: nobody ever learnt this pid.
            return release(record.pid, store: store, ended: true)
        }
        pid = record.pid
        chat = ChatSession(
            roomID: roomID!, limits: server.chatLimits, hub: server.hub, shard: shard, member: self,
            now: { NIODeadline.now().uptimeNanoseconds }
        )
        sendMessage(socketIO.acceptConnect(namespace: namespace, sid: record.sid, pid: record.pid))
    }

    /// The session came back: its room and username without a join (the room sees nothing),
    /// every broadcast it missed in order, then its old sid and pid, which tell the client so.
    private func applyRecovery(_ record: SessionRecord, missed: [ByteBuffer], snapshotAt: NIODeadline, namespace: String,
                               store: RecoveryStore) {
        connectPending = false
        guard !state.isClosed else {
            // Closed while the store looked: the store counts it live here now; hold it again
            // rather than resurrect it.
            return release(record.pid, store: store, ended: false)
        }
        pid = record.pid
        // With a username it is a member of its room again at once, as of the snapshot, and
        // the room hears nothing.
        chat = ChatSession(
            roomID: roomID!, limits: server.chatLimits, hub: server.hub, shard: shard, member: self,
            now: { NIODeadline.now().uptimeNanoseconds }, restoredUsername: record.username, restoredAt: snapshotAt
        )
        server.heldRooms?.release(pid: record.pid)
        sendReplay(missed)
        sendMessage(socketIO.acceptConnect(namespace: namespace, sid: record.sid, pid: record.pid))
        logger.debug("session recovered", metadata: ["missed": "\(missed.count)"])
    }

    /// A `join` that `chat` will accept (the same checks as `ChatSession.join`: not joined yet,
    /// a valid username): the store records the username first. Both this and the join's
    /// publish hop to the store's loop, in this order, so the record reaches the peers before
    /// the join does, and a node that recovers the session knows it had joined.
    private func recordJoinAhead(of arguments: [JSONValue], chat: ChatSession, store: RecoveryStore) {
        guard let pid, !chat.isJoined, let username = arguments.first?["username"]?.stringValue,
              server.chatLimits.value.validateUsername(username) == nil else { return }
        onStoreLoop(store) { store.joined(pid: pid, username: username) }
    }

    /// The client ended its session itself (`41`): the record becomes a tombstone and the
    /// store publishes the quit. Returns false without recovery (the caller publishes it).
    private func endRecoverableSession() -> Bool {
        guard let store = server.recovery, let pid else { return false }
        self.pid = nil
        release(pid, store: store, ended: true)
        return true
    }

    /// Tells the store this connection is gone: the session ended, or is held. Said as this
    /// connection: if another one took the session over meanwhile (here, or a claim from
    /// another node that reached the store first), the store changes nothing.
    private func release(_ pid: String, store: RecoveryStore, ended: Bool) {
        onStoreLoop(store) { [self] in
            if ended {
                store.ended(pid: pid, session: self)
            } else {
                store.detached(pid: pid, session: self)
            }
        }
    }

    /// Called on the store's loop: another connection recovered this session's pid. This one
    /// closes (a normal close for the client) without a quit and without holding the session.
    func sessionTakenOver() {
        eventLoop.execute { [self] in
            guard !state.isClosed, pid != nil else { return }
            logger.info("session taken over by another connection")
            takenOver = true
            // Socket.IO DISCONNECT first ("io server disconnect"): an official client that is
            // still alive on this connection then does not reconnect on its own and take the
            // session back, which would make two holders of one pid take it from each other.
            sendMessage(SocketPacketCodec.encode(SocketPacket(type: .disconnect, namespace: "/")))
            close(.transportClose)
        }
    }

    private func onStoreLoop(_ store: RecoveryStore, _ work: @escaping @Sendable () -> Void) {
        store.eventLoop.execute(work)
    }

    private func onSessionLoop(_ work: @escaping @Sendable () -> Void) {
        if eventLoop.inEventLoop {
            work()
        } else {
            eventLoop.execute(work)
        }
    }

    // MARK: Outbound

    private func sendMessage(_ socketPacket: String) {
        send(.message(socketPacket))
    }

    /// Sends replayed broadcasts, each already Engine.IO text (`42[…,"<offset>"]`), in order,
    /// with one flush. More than `outbound_buffer` of them cuts the client off (it is held again).
    private func sendReplay(_ packets: [ByteBuffer]) {
        guard !state.isClosed, !packets.isEmpty else { return }
        if state.sendsOverPolling {
            for packet in packets where !cutOff { enqueueForPolling(packet) }
            flushPollQueue()
        } else if let socket = webSocket {
            var bytes = 0
            for packet in packets {
                let frame = WebSocketWire.textFrame(packet)
                bytes += frame.readableBytes
                if let writer { writer.write(frame) } else { socket.write(frame) }
            }
            server.metrics.chat.bytesSent.increment(by: Int64(bytes))
            if let writer { writer.flush() } else { socket.flush() }
        }
    }

    /// Sends one packet now (acks, errors, heartbeats): queued for polling, or written and flushed.
    private func send(_ packet: EnginePacket) {
        guard !state.isClosed else { return }
        if state.sendsOverPolling {
            enqueueForPolling(ByteBuffer(string: packet.encodedForPolling()))
            flushPollQueue()
        } else if let socket = webSocket {
            write(packet, to: socket, writer: writer)
        }
    }

    /// Writes and flushes one packet as a WebSocket frame.
    private func write(_ packet: EnginePacket, to socket: EngineWebSocket, writer: WebSocketEngineHandler?) {
        let frame: ByteBuffer
        switch packet.payload {
        case .text(let text):
            frame = WebSocketWire.textFrame(ByteBuffer(string: EnginePacket.encodeText(packet.type, text)))
        case .binary(let bytes):
            frame = WebSocketWire.frame(opcode: WebSocketWire.binaryOpcode, payload: ByteBuffer(bytes: bytes))
        }
        server.metrics.chat.bytesSent.increment(by: Int64(frame.readableBytes))
        if let writer {
            writer.write(frame)
            writer.flush()
        } else {
            socket.writeAndFlush(frame)
        }
    }

    private func enqueueForPolling(_ encoded: ByteBuffer) {
        pollQueueBytes += encoded.readableBytes
        pollQueue.append(encoded)
        if pollQueueBytes > server.outboundBuffer {
            overflow()
        }
    }

    func deliver(_ batch: RoomBatch) {
        guard !state.isClosed, !cutOff else { return }
        if state.sendsOverPolling {
            for frame in batch.engineFrames where !cutOff {
                enqueueForPolling(frame)
            }
            flushPollQueue()
        } else if let writer {
            // The hot path: the bytes every member of the room shares, one write and one flush.
            guard writer.writeBroadcasts(batch.transportBytes) else { return overflow() }
        } else if let socket = webSocket {
            guard socket.isWritable else { return overflow() }
            socket.writeAndFlush(batch.transportBytes)
        }
    }

    /// A reload changed `outbound_buffer`: the WebSocket's write buffer takes the new bound (a
    /// polling queue reads it per packet already).
    func outboundBoundChanged(_ bytes: Int) {
        eventLoop.preconditionInEventLoop()
        webSocket?.setOutboundBound(bytes)
    }

    /// The client reads slower than the room talks. Closing is deferred to the next tick so a
    /// broadcast in progress is not re-entered by this client's quit.
    private func overflow() {
        guard !state.isClosed, !cutOff else { return }
        cutOff = true
        logger.info("outbound buffer overflow, disconnecting client")
        server.metrics.countError("outbound_overflow")
        pollQueue.removeAll()
        pollQueueBytes = 0
        eventLoop.execute { self.close(.outboundOverflow) }
    }

    // MARK: Heartbeat

    /// Puts the session's next heartbeat deadline on the wheel (any earlier one is void).
    private func armHeartbeat(at deadline: UInt64) {
        heartbeatGeneration &+= 1
        heartbeats.schedule(self, generation: heartbeatGeneration, at: .uptimeNanoseconds(deadline))
    }

    func heartbeatDeadlinePassed(generation: UInt32) {
        guard generation == heartbeatGeneration else { return }
        if case .wait(let until) = checkHeartbeat() {
            // Not due yet after all (the wheel never fires early, but a deadline must not be lost).
            armHeartbeat(at: until)
        }
    }

    /// Takes the heartbeat step that is due: on the wheel's tick, and before anything from the
    /// client is handled, so a client heard from after its pong deadline finds the session
    /// closed (as on the reference server) even if the tick is yet to come.
    @discardableResult
    private func checkHeartbeat() -> EngineSessionState.HeartbeatAction {
        let action = state.heartbeatDue(now: eventLoop.now.uptimeNanoseconds)
        switch action {
        case .wait, .stopped:
            break
        case .sendPing(let pongDue):
            send(EnginePacket(.ping))
            armHeartbeat(at: pongDue)
        case .close(let reason):
            logger.debug("pong not received in time")
            teardown(reason)
        }
        return action
    }

    // MARK: Closing

    /// Closes the session from the server side.
    func close(_ reason: EngineSessionState.CloseReason) {
        eventLoop.preconditionInEventLoop()
        guard state.close(reason) else { return }
        teardown(reason)
    }

    /// The node is draining: the client must reconnect, elsewhere. Like the Node server on
    /// shutdown, a WebSocket gets a close frame (1001 going away) rather than Engine.IO `1`,
    /// because clients such as python-socketio treat `1` as "do not reconnect". A polling
    /// client keeps getting what is queued for it on its next GETs, then a 503 that makes it
    /// reconnect (through nginx, to another node).
    func drain() {
        eventLoop.preconditionInEventLoop()
        guard !state.isClosed else { return }
        guard state.sendsOverPolling else { return close(.serverClose) }
        draining = true
        if let responder = pendingPoll {
            pendingPoll = nil
            answerDrainingPoll(responder)
        }
    }

    private func answerDrainingPoll(_ responder: HTTPResponder) {
        if pollQueue.isEmpty {
            responder.send(HTTPReply(
                status: .serviceUnavailable, contentType: "application/json",
                text: #"{"code":3,"message":"Server is shutting down"}"#
            ))
            close(.serverClose)
        } else {
            pendingPoll = responder
            flushPollQueue()
        }
    }

    /// What a close means for a session that can be recovered. A broken packet ends it (as a
    /// `41` would: the client is broken, not cut off), and so does this node's drain when no
    /// other node could recover the session (its record and history go with this process);
    /// a takeover leaves it to the new connection; anything else (the transport went, the
    /// client went silent or fell behind, a mesh node drains) holds it: it leaves the room
    /// without a quit and can be recovered within `max_disconnection`, after which its quit is
    /// published.
    private func settleRecoverableSession(pid: String, reason: EngineSessionState.CloseReason, store: RecoveryStore) {
        self.pid = nil
        if takenOver {
            chat?.detach()
        } else if reason == .parseError || (reason == .serverClose && !server.sessionsOutliveNode) {
            // Ended: the store publishes the quit (see endRecoverableSession).
            chat?.detach()
            release(pid, store: store, ended: true)
        } else {
            if let heldRooms = server.heldRooms, let chat, chat.isJoined {
                heldRooms.hold(pid: pid, room: chat.roomID, shard: shard)
            }
            chat?.detach()
            release(pid, store: store, ended: false)
        }
    }

    private func teardown(_ reason: EngineSessionState.CloseReason) {
        logger.debug("session closed", metadata: ["reason": "\(reason.rawValue)"])
        for timer in [upgradeTimer, connectTimer] { timer?.cancel() }
        heartbeatGeneration &+= 1
        if let store = server.recovery, let pid {
            settleRecoverableSession(pid: pid, reason: reason, store: store)
        } else {
            chat?.leave()
        }
        chat = nil
        server.sessions.remove(sid)
        if let responder = pendingPoll {
            pendingPoll = nil
            responder.send(pollReply(EnginePacket.encodeText(reason.pendingPollRelease)))
        }
        pollQueue.removeAll()
        pollQueueBytes = 0
        writer = nil
        probeWriter = nil
        if let socket = webSocket {
            webSocket = nil
            let code: WebSocketErrorCode
            switch reason {
            case .parseError: code = .protocolError
            case .serverClose: code = .goingAway
            default: code = .normalClosure
            }
            socket.close(code: code, grace: Self.closeGrace)
        }
        probe?.abandon()
        probe = nil
    }
}
