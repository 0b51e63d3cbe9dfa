import ChatCore
import ClusterConfig
import NIOCore

/// The mesh's session relay (docs/RELAY.md): a node that gets a client's request for a session
/// another node owns sends it over its link to the owner (RELAY_REQUEST) and answers the client
/// with the owner's reply (RELAY_REPLY); a WebSocket becomes a relayed stream (RELAY_FRAME both
/// ways, RELAY_CLOSE to end it). The same link carries both directions: each node is the relay
/// for some requests and the owner for others (`MeshRelayLink`'s two tables).
///
/// Nothing here runs for a broadcast: the relay costs the mesh only a table per link, and a
/// switch case in `received` that PUBs never reach.
extension MeshFanout: SessionRelay {
    /// RELAY_CLOSE codes (WebSocket close codes, which the relay gives its client as they are).
    enum RelayCloseCode {
        /// The relay's client went away (cancel of a GET/POST, end of a stream).
        static let clientGone: UInt16 = 1001
        /// The link to the owner went down.
        static let linkDown: UInt16 = 1011
        /// The owner is over a cap for the stream.
        static let overCap: UInt16 = 1013
        /// The owner has no such session.
        static let unknownSession: UInt16 = 4404
    }

    public var relay: (any SessionRelay)? { self }

    /// A sid's owner tag: its first 4 characters when it has the 20 of a sid made by
    /// `SessionID.make(ownerTag:)`; nil for anything else a client sends.
    static func ownerTag(of sid: String) -> String? {
        sid.utf8.count == 20 ? String(sid.prefix(NodeTag.length)) : nil
    }

    /// The peer whose tag `sid` carries, if any.
    func ownerPeer(of sid: String) -> String? {
        guard let tag = Self.ownerTag(of: sid) else { return nil }
        return peerTags.withLockedValue { $0[tag] }
    }

    // MARK: SessionRelay, the relay side (any thread)

    public func isPeerSession(sid: String) -> Bool {
        ownerPeer(of: sid) != nil
    }

    public func send(_ request: RelayedRequest, completion: @escaping @Sendable (Result<RelayReply, RelayFailure>) -> Void)
        -> @Sendable () -> Void {
        let ticket = RelayTicket()
        eventLoop.execute { [self] in startRelayed(request, ticket, completion) }
        // Queued after the send, so it finds the ticket filled in (or the request already over).
        return { [self] in eventLoop.execute { [self] in cancelRelayed(ticket) } }
    }

    public func openStream(sid: String, origin: String?, onFrame: @escaping @Sendable (RelayFrameKind, ByteBuffer) -> Void,
                           onClose: @escaping @Sendable (UInt16) -> Void) -> (any RelayStream)? {
        let request = RelayedRequest(kind: .webSocket, sid: sid, origin: origin, body: ByteBuffer())
        guard let peer = ownerPeer(of: sid), liveLinks.withLockedValue({ $0[peer] != nil }),
              MeshFrameCodec.canEncode(request) else {
            relayMetrics.count(.webSocket, .unknownSid)
            return nil
        }
        let handle = RelayedStreamHandle(eventLoop: eventLoop, metrics: relayMetrics, onFrame: onFrame, onClose: onClose)
        eventLoop.execute { [self] in startStream(request, handle) }
        return handle
    }

    public func setOwnerHandler(_ handler: any RelayOwnerHandler) {
        relayOwner.withLockedValue { $0 = handler }
    }

    // MARK: Relay side (on the mesh loop)

    /// The live link to the owner of `sid`, if there is one.
    private func ownerLink(of sid: String) -> MeshRelayLink? {
        guard let peer = ownerPeer(of: sid), let link = peers[peer]?.link?.relay, link.isOpen else { return nil }
        return link
    }

    private func startRelayed(_ request: RelayedRequest, _ ticket: RelayTicket,
                              _ completion: @escaping @Sendable (Result<RelayReply, RelayFailure>) -> Void) {
        guard let link = ownerLink(of: request.sid) else {
            relayMetrics.count(request.kind, .unknownSid)
            return completion(.failure(.noOwner))
        }
        guard request.kind != .webSocket, MeshFrameCodec.canEncode(request),
              let id = link.outbound.add(.request(kind: request.kind, sent: .now(), completion: completion)) else {
            relayMetrics.count(request.kind, .refused)
            return completion(.failure(.refused))
        }
        ticket.link = link
        ticket.id = id
        link.send(.relayRequest(id: id, request: request))
    }

    private func cancelRelayed(_ ticket: RelayTicket) {
        guard let link = ticket.link, link.isOpen, case .request(let kind, _, _)? = link.outbound.remove(ticket.id) else {
            return
        }
        relayMetrics.count(kind, .cancelled)
        link.send(.relayClose(id: ticket.id, code: RelayCloseCode.clientGone))
    }

    private func startStream(_ request: RelayedRequest, _ handle: RelayedStreamHandle) {
        guard let link = ownerLink(of: request.sid) else {
            relayMetrics.count(.webSocket, .peerDown)
            return handle.onClose(RelayCloseCode.linkDown)
        }
        guard let id = link.outbound.add(.stream(handle)) else {
            relayMetrics.count(.webSocket, .refused)
            return handle.onClose(RelayCloseCode.overCap)
        }
        handle.link = link
        handle.id = id
        link.send(.relayRequest(id: id, request: request))
    }

    // MARK: Frames from a peer (on the mesh loop)

    func receivedRelay(_ frame: MeshFrame, from peer: PeerState, link handler: PeerLinkHandler) {
        guard let link = handler.relay else { return }
        switch frame {
        case .relayRequest(let id, let request):
            receivedRequest(id, request, on: link, handler)
        case .relayReply(let id, let reply):
            guard link.outbound.wasIssued(id) else { return violation("RELAY_REPLY for id \(id), never sent", handler) }
            switch link.outbound.entries[id] {
            case .request(let kind, let sent, let completion):
                _ = link.outbound.remove(id)
                relayMetrics.replied(kind, reply, sent: sent)
                completion(.success(reply))
            case .stream:
                violation("RELAY_REPLY for stream \(id)", handler)
            case nil:
                break // crossed our RELAY_CLOSE: the client is gone
            }
        case .relayFrame(let id, let kind, let payload):
            if link.outbound.isOurs(id) {
                guard link.outbound.wasIssued(id) else { return violation("RELAY_FRAME for id \(id), never sent", handler) }
                switch link.outbound.entries[id] {
                case .stream(let handle): handle.onFrame(kind, payload)
                case .request: violation("RELAY_FRAME for request \(id), not a stream", handler)
                case nil: break // the stream ended here while the frame was on its way
                }
            } else {
                guard link.inbound.wasOpened(id) else { return violation("RELAY_FRAME for id \(id), never opened", handler) }
                switch link.inbound.entries[id] {
                case .stream(_, let sink, _):
                    // The relay sends the client's packets; framed bytes only ever go to a relay.
                    guard kind != .framed else { return violation("framed RELAY_FRAME to the owner", handler) }
                    sink?.received(kind, payload)
                case .exchange: violation("RELAY_FRAME for request \(id), not a stream", handler)
                case nil: break
                }
            }
        case .relayClose(let id, let code):
            if link.outbound.isOurs(id) {
                guard link.outbound.wasIssued(id) else { return violation("RELAY_CLOSE for id \(id), never sent", handler) }
                switch link.outbound.remove(id) {
                case .stream(let handle):
                    // A stream is counted when it ends: refused by the owner, or ended by either side.
                    relayMetrics.count(.webSocket, code == RelayCloseCode.unknownSession ? .unknownSid
                                                   : code == RelayCloseCode.overCap ? .refused : .ok)
                    handle.onClose(code)
                case .request(let kind, _, let completion):
                    // An owner does not close a GET/POST (it replies), but one that does fails it.
                    relayMetrics.count(kind, .error)
                    completion(.failure(.refused))
                case nil: break
                }
            } else {
                guard link.inbound.wasOpened(id) else { return violation("RELAY_CLOSE for id \(id), never opened", handler) }
                switch link.inbound.remove(id) {
                case .exchange(let exchange, let kind, _):
                    relayMetrics.count(kind, .cancelled)
                    exchange.finish(.clientGone)
                case .stream(_, let sink, _):
                    sink?.ended(.clientGone)
                case nil: break // crossed our reply or close
                }
            }
        default:
            break
        }
    }

    /// A relay frame that cannot be right: the link is closed (everything on it fails) and counted.
    private func violation(_ reason: String, _ handler: PeerLinkHandler) {
        logger.warning("mesh relay protocol violation", metadata: ["peer": "\(handler.peer?.name ?? "?")", "reason": "\(reason)"])
        relayMetrics.protocolViolations.increment()
        handler.close(reason: reason)
    }

    // MARK: Owner side (on the mesh loop)

    private func receivedRequest(_ id: UInt64, _ request: RelayedRequest, on link: MeshRelayLink, _ handler: PeerLinkHandler) {
        switch link.inbound.admit(id: id, sid: request.sid) {
        case .badID:
            return violation("RELAY_REQUEST id \(id) reused or out of order", handler)
        case .overCap:
            relayMetrics.count(request.kind, .refused)
            if request.kind == .webSocket {
                link.send(.relayClose(id: id, code: RelayCloseCode.overCap))
            } else {
                link.send(.relayReply(id: id, reply: .badRequest))
            }
            return
        case .admitted:
            break
        }
        // A sid with another node's tag is not ours whatever the handler says: the peer's
        // config names nodes differently, or it is broken. Answered as an unknown session.
        guard let owner = relayOwner.withLockedValue({ $0 }), Self.ownerTag(of: request.sid) == localTag else {
            relayMetrics.count(request.kind, .unknownSid)
            if request.kind == .webSocket {
                link.send(.relayClose(id: id, code: RelayCloseCode.unknownSession))
            } else {
                link.send(.relayReply(id: id, reply: .sessionUnknown))
            }
            return
        }
        if request.kind == .webSocket {
            openOwnedStream(id, request, on: link, owner)
        } else {
            let exchange = RelayExchange { [self] reply in
                onRelayLoop { [self] in ownerReplied(id, reply, on: link) }
            }
            link.inbound.insert(id, .exchange(exchange, kind: request.kind, sid: request.sid))
            owner.handleRelayed(request, from: link.peer, exchange: exchange)
        }
    }

    private func openOwnedStream(_ id: UInt64, _ request: RelayedRequest, on link: MeshRelayLink, _ owner: any RelayOwnerHandler) {
        let handle = OwnedStreamHandle(eventLoop: eventLoop, link: link, id: id)
        link.inbound.insert(id, .stream(handle, sink: nil, sid: request.sid))
        let sink = owner.openRelayedStream(sid: request.sid, origin: request.origin, from: link.peer, stream: handle)
        guard let sink else {
            relayMetrics.count(.webSocket, .unknownSid)
            if link.inbound.remove(id) != nil { link.send(.relayClose(id: id, code: RelayCloseCode.unknownSession)) }
            return
        }
        // False when the handler closed it already, or the link fell while it decided.
        if link.inbound.setSink(id, sink) { relayMetrics.count(.webSocket, .ok) }
    }

    private func ownerReplied(_ id: UInt64, _ reply: RelayReply, on link: MeshRelayLink) {
        // Gone: cancelled by the relay, or its link is down (a reply after that has nowhere to go).
        guard link.isOpen, case .exchange(_, let kind, _)? = link.inbound.remove(id) else { return }
        var reply = reply
        // The peer would close the link for a status outside HTTP's.
        if !(100...599).contains(reply.status) { reply.status = 500 }
        relayMetrics.count(kind, RelayMetrics.result(of: reply))
        link.send(.relayReply(id: id, reply: reply))
    }

    // MARK: Link lifecycle (on the mesh loop)

    /// A link authenticated: it can carry relayed requests both ways from now.
    func relayLinkUp(_ handler: PeerLinkHandler, peer: String) {
        handler.relay = MeshRelayLink(peer: peer, handler: handler, weDialed: handler.dialedPeer != nil)
    }

    /// A link went down or was replaced: every request and stream on it fails at once, both ways.
    func relayLinkDown(_ handler: PeerLinkHandler) {
        guard let link = handler.relay, link.isOpen else { return }
        link.isOpen = false
        for entry in link.outbound.removeAll() {
            switch entry {
            case .request(let kind, _, let completion):
                relayMetrics.count(kind, .peerDown)
                completion(.failure(.peerDown))
            case .stream(let handle):
                relayMetrics.count(.webSocket, .peerDown)
                handle.onClose(RelayCloseCode.linkDown)
            }
        }
        for entry in link.inbound.removeAll() {
            switch entry {
            case .exchange(let exchange, let kind, _):
                relayMetrics.count(kind, .peerDown)
                exchange.finish(.relayLost)
            case .stream(_, let sink, _):
                sink?.ended(.relayLost)
            }
        }
    }

    /// Runs `work` on the mesh loop: inline when already there, queued otherwise.
    private func onRelayLoop(_ work: @escaping @Sendable () -> Void) {
        if eventLoop.inEventLoop { work() } else { eventLoop.execute(work) }
    }
}
