import ChatCore
import Logging
import NIOCore

/// The mesh's part in connection-state recovery (docs/RECOVERY.md), used only when the hub has
/// a `RecoveryStore`:
///
/// - the node's own messages are numbered by the store (`originate`) on its loop, delivered
///   there, and forwarded to every peer as PUB_STAMPED, whatever the peer's interest, since
///   every node keeps every room's recent history;
/// - a PUB_STAMPED from a peer is delivered with its origin, the peer's process;
/// - session records go to every live peer when they change (`replicate`) and all of them
///   when a link comes up; a peer's records are merged; a lost link holds the sessions that
///   lived on that peer's process.
///
/// The store is confined to its own loop, which ChatNode makes the mesh loop; calls hop when
/// the two differ, and run inline when they are the same (the fast, usual case).
extension MeshFanout: SessionReplication {
    // MARK: SessionReplication (called on the store's loop)

    public func replicate(_ record: SessionRecord) {
        guard MeshFrameCodec.canEncode(record) else {
            logger.warning("session record too large for a SESSION frame, not replicated", metadata: ["room": "\(record.room)"])
            return
        }
        let frame = MeshFrameCodec.encode(.session(record))
        onLoop { [self] in
            for peer in peers.values { peer.link?.write(frame, flush: false) }
        }
    }

    public var liveNodeNames: Set<String> {
        liveLinks.withLockedValue { Set($0.keys) }
    }

    public var liveOrigins: Set<UInt32> {
        liveLinks.withLockedValue { Set($0.values) }
    }

    // MARK: Wiring

    func startReplication(to recovery: RecoveryStore) {
        onStoreLoop(recovery) { [self] in recovery.replication = self }
    }

    // MARK: Messages

    /// On the store's loop: number the node's own message, deliver it here, forward it.
    func publishRecorded(_ broadcast: ChatBroadcast, _ recovery: RecoveryStore) {
        var numbered = broadcast
        numbered.origin = recovery.originate(room: broadcast.room)
        delivery?.deliverLocally(numbered)
        // Per message: checked here, not in onLoop, so the usual case makes no closure.
        if eventLoop.inEventLoop {
            forwardToEveryPeer(numbered)
        } else {
            eventLoop.execute { [self, numbered] in forwardToEveryPeer(numbered) }
        }
    }

    /// Every peer, up or buffered for, gets the message: interest is not consulted.
    private func forwardToEveryPeer(_ broadcast: ChatBroadcast) {
        guard let originSequence = broadcast.origin?.sequence else { return }
        let now = NIODeadline.now().uptimeNanoseconds
        let payload = broadcast.socketPacket
        for peer in peers.values {
            let sequence = peer.outbox.takeSequence()
            var frame = ByteBufferAllocator().buffer(capacity: 25 + broadcast.room.utf8.count + payload.readableBytes)
            MeshFrameCodec.encode(.pubStamped(sequence: sequence, originSequence: originSequence, room: broadcast.room,
                                              payload: payload), into: &frame)
            let dropped = peer.outbox.append(sequence: sequence, frame: frame, now: now, written: peer.link != nil)
            if dropped.total > 0 { metrics.count(dropped) }
            if let link = peer.link {
                link.write(frame, flush: false)
                metrics.forwarded.increment()
            }
        }
    }

    /// A PUB_STAMPED from a peer (its origin set), delivered on the store's loop. A gap in the
    /// link's numbering means the peer's buffer dropped messages of unknown rooms: the store
    /// then cannot vouch for that origin anywhere until its next message.
    func deliverStamped(_ broadcast: ChatBroadcast, linkGap: UInt64) {
        guard let recovery else {
            delivery?.deliverLocally(broadcast)
            return
        }
        // Per message: checked here, not in onStoreLoop, so the usual case makes no closure.
        if recovery.eventLoop.inEventLoop {
            deliverStampedOnStoreLoop(broadcast, linkGap: linkGap, recovery)
        } else {
            recovery.eventLoop.execute { [self] in deliverStampedOnStoreLoop(broadcast, linkGap: linkGap, recovery) }
        }
    }

    private func deliverStampedOnStoreLoop(_ broadcast: ChatBroadcast, linkGap: UInt64, _ recovery: RecoveryStore) {
        if linkGap > 0, let origin = broadcast.origin?.origin { recovery.noteGap(origin: origin, room: nil) }
        delivery?.deliverLocally(broadcast)
    }

    /// A plain PUB while recovery is on here: the peer has it off (a config change rolling
    /// through the cluster). Delivered without an origin, so the store numbers it as this
    /// node's own; other nodes number it their way, and offsets may not match across nodes
    /// for such messages until every node runs the same config.
    func deliverUnstamped(_ broadcast: ChatBroadcast, from peer: PeerState, _ recovery: RecoveryStore) {
        tellMixedRecoveryOnce(peer, "mesh peer sends PUB without origin (recovery off there?): numbered here as this node's own")
        onStoreLoop(recovery) { [self] in delivery?.deliverLocally(broadcast) }
    }

    // MARK: Session records

    func receivedSession(_ record: SessionRecord, from peer: PeerState) {
        guard let recovery else {
            tellMixedRecoveryOnce(peer, "mesh peer sends session records but recovery is off here: ignored")
            return
        }
        let fromOwner = record.owner == peer.name
        onStoreLoop(recovery) { recovery.merge(record, fromOwner: fromOwner) }
    }

    /// On link up, after the SNAPSHOT: every record this node knows, tombstones included.
    func sendAllSessionRecords(to peer: PeerState, link: PeerLinkHandler) {
        guard let recovery else { return }
        if recovery.eventLoop.inEventLoop {
            send(recovery.allRecords, on: link)
        } else {
            let name = peer.name
            recovery.eventLoop.execute { [self] in
                let records = recovery.allRecords
                eventLoop.execute { [self] in
                    // A newer link to the same peer sent its own copy; this one is then moot.
                    guard let link = peers[name]?.link else { return }
                    send(records, on: link)
                }
            }
        }
    }

    private func send(_ records: [SessionRecord], on link: PeerLinkHandler) {
        var skipped = 0
        for record in records {
            guard MeshFrameCodec.canEncode(record) else {
                skipped += 1
                continue
            }
            link.send(.session(record), flush: false)
        }
        if skipped > 0 {
            logger.warning("session records too large for a SESSION frame, not sent", metadata: ["skipped": "\(skipped)"])
        }
    }

    /// The link to `peer`'s process of `epoch` is gone (closed, said goodbye, or replaced by a
    /// link to a restarted process): its live sessions are held from now.
    func recoveryPeerLost(_ peer: PeerState, epoch: UInt64) {
        guard let recovery, epoch != 0 else { return }
        let name = peer.name
        onStoreLoop(recovery) { recovery.peerLost(node: name, epoch: epoch) }
    }

    private func tellMixedRecoveryOnce(_ peer: PeerState, _ message: Logger.Message) {
        guard !peer.toldMixedRecovery else { return }
        peer.toldMixedRecovery = true
        logger.info(message, metadata: ["peer": "\(peer.name)"])
    }

    // MARK: Loops

    /// Runs `work` on the store's loop: inline when already there, so a delivery keeps its
    /// place among the mesh's own events; queued otherwise (still in order).
    private func onStoreLoop(_ recovery: RecoveryStore, _ work: @escaping @Sendable () -> Void) {
        if recovery.eventLoop.inEventLoop { work() } else { recovery.eventLoop.execute(work) }
    }

    /// Runs `work` on the mesh loop: inline when already there, queued otherwise.
    private func onLoop(_ work: @escaping @Sendable () -> Void) {
        if eventLoop.inEventLoop { work() } else { eventLoop.execute(work) }
    }
}
