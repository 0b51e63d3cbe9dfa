import ChatCore
import ClusterConfig
import NIOCore

/// A reload of cluster.conf, as the mesh takes it (docs/MESH.md "Reload"): peers added are
/// dialed or awaited, peers removed are said GOODBYE to and forgotten, a peer that moved is
/// redialed, and the live `[mesh]` settings apply from now on. Links to peers that did not
/// change are not touched, so nothing in flight to them is lost or sent twice.
extension MeshFanout {
    /// Applies `config` (the node passes `ConfigDiff(...).appliedConfig`, which already keeps
    /// what needs a restart, this node's own entry among it). This node's entry, the secret and
    /// `[mesh] tls` are not read: they were bound at start. Runs on the mesh loop; the future
    /// completes there with what changed.
    public func apply(_ config: ClusterConfig) -> EventLoopFuture<MeshReloadReport> {
        eventLoop.submit { [self] in applyOnLoop(config) }
    }

    func applyOnLoop(_ config: ClusterConfig) -> MeshReloadReport {
        eventLoop.preconditionInEventLoop()
        var report = MeshReloadReport()
        // Settings first, so a peer added below gets the new buffer bound and backoff cap.
        applySettings(config.mesh, &report)

        var wanted: [String: HostPort] = [:]
        for node in config.nodes where node.name != localName {
            if let mesh = node.mesh { wanted[node.name] = mesh }
        }
        for name in peers.keys.sorted() where wanted[name] == nil {
            guard let peer = peers.removeValue(forKey: name) else { continue }
            remove(peer)
            report.removed.append(name)
        }
        for (name, address) in wanted.sorted(by: { $0.key < $1.key }) {
            if let peer = peers[name] {
                guard peer.address != address else { continue }
                report.readdressed.append(MeshReloadReport.Readdressed(
                    peer: name, from: peer.address.description, to: address.description, redialed: peer.weDial))
                readdress(peer, to: address)
            } else {
                add(name, at: address)
                report.added.append(name)
            }
        }
        if !report.added.isEmpty || !report.removed.isEmpty {
            knownPeers = Set(peers.keys)
            peerTags.withLockedValue { $0 = Self.tags(of: knownPeers) }
        }
        updatePeerGauges()
        // A removed or redialed peer that still owed ACKs no longer holds up a drain.
        settleDrainsIfAcknowledged()
        return report
    }

    // MARK: Peers

    private func add(_ name: String, at address: HostPort) {
        let peer = PeerState(name: name, address: address, weDial: localName < name,
                             bufferMessages: settings.bufferMessages, reconnectMax: settings.reconnectMax,
                             metricsFactory: metricsFactory)
        peers[name] = peer
        logger.info("mesh peer added", metadata: ["peer": "\(name)", "address": "\(address)",
                                                  "link": "\(peer.weDial ? "dialing it" : "it dials this node")"])
        // Every node takes a reload at about the same time, so every node would dial a new
        // peer at the same instant: the first dial is spread as at start.
        if started { scheduleFirstDial(peer) }
    }

    /// Its link is closed with a GOODBYE saying why, and what the mesh kept for it (interest,
    /// outbox, resume point, timers) goes with its `PeerState`.
    private func remove(_ peer: PeerState) {
        peer.removed = true
        peer.redialTimer?.cancel()
        peer.redialTimer = nil
        peer.nextDialAt = nil
        let reason = "removed from cluster.conf"
        detachLink(of: peer, reason: reason)
        closePendingDials(to: peer.name, reason: reason)
        // Not counted as dropped: those PUBs were for members of a node leaving the cluster.
        logger.info("mesh peer removed", metadata: ["peer": "\(peer.name)", "discarded": "\(peer.outbox.count)"])
    }

    /// A peer this node dials is redialed at its new address, resuming where the old link left
    /// off (the outbox is kept, so nothing is lost, and the peer drops what it had). A peer that
    /// dials this node keeps its link: its new address only matters to whoever dials it, and it
    /// must restart to listen there anyway.
    private func readdress(_ peer: PeerState, to address: HostPort) {
        let from = peer.address
        peer.address = address
        logger.info("mesh peer address changed", metadata: ["peer": "\(peer.name)", "from": "\(from)", "to": "\(address)"])
        guard peer.weDial else { return }
        let reason = "mesh address of \(peer.name) changed in cluster.conf: redialing at \(address)"
        detachLink(of: peer, reason: reason)
        closePendingDials(to: peer.name, reason: reason)
        peer.redialTimer?.cancel()
        peer.redialTimer = nil
        peer.nextDialAt = nil
        peer.backoff.reset()
        // Every node that dials it moves at once: spread as at start.
        if started { scheduleFirstDial(peer) }
    }

    /// Ends `peer`'s live link at once, as its loss would (relayed requests fail, its sessions
    /// are held when recovery is on), and says GOODBYE with `reason`. The link's own close later
    /// finds itself detached and does nothing more (`linkClosed`).
    private func detachLink(of peer: PeerState, reason: String) {
        guard let link = peer.link else { return }
        peer.link = nil
        peer.ackTimer?.cancel()
        peer.ackTimer = nil
        peer.unacknowledged = 0
        relayLinkDown(link)
        link.close(reason: reason)
        recoveryPeerLost(peer, epoch: peer.linkEpoch)
        updatePeerGauges()
    }

    /// Dials to `name` still in their handshake.
    private func closePendingDials(to name: String, reason: String) {
        for link in pendingHandshakes where link.dialedPeer == name { link.close(reason: reason) }
    }

    // MARK: Settings

    private func applySettings(_ new: MeshSettings, _ report: inout MeshReloadReport) {
        let old = settings
        // TLS is bound at start (ConfigDiff keeps the old value in appliedConfig).
        settings.pingInterval = new.pingInterval
        settings.bufferMessages = new.bufferMessages
        settings.bufferTime = new.bufferTime
        settings.maxFrame = new.maxFrame
        settings.reconnectMax = new.reconnectMax
        if new.tls != old.tls { report.notes.append("[mesh] tls needs a restart of every node: kept as it was") }

        if new.pingInterval != old.pingInterval {
            report.settingsChanged.append("ping_interval \(old.pingInterval.wholeMilliseconds) -> \(new.pingInterval.wholeMilliseconds)")
            heartbeatPunctuality = HeartbeatPunctuality(interval: new.pingInterval)
            // The next beat comes one new interval from now; silence is judged by the new one.
            if started && !stopping { startHeartbeat() }
        }
        if new.bufferMessages != old.bufferMessages {
            report.settingsChanged.append("buffer_messages \(old.bufferMessages) -> \(new.bufferMessages)")
            for peer in peers.values {
                let dropped = peer.outbox.setMaxMessages(new.bufferMessages)
                if dropped.total > 0 { metrics.count(dropped) }
            }
        }
        if new.bufferTime != old.bufferTime {
            // Read by every heartbeat.
            report.settingsChanged.append("buffer_ms \(old.bufferTime.wholeMilliseconds) -> \(new.bufferTime.wholeMilliseconds)")
        }
        if new.maxFrame != old.maxFrame {
            report.settingsChanged.append("max_frame \(old.maxFrame) -> \(new.maxFrame)")
            // A link's decoder got its limit when the link was made.
            let open = peers.values.filter(\.isUp).count + pendingHandshakes.count
            if open > 0 { report.notes.append("max_frame applies to new links; \(open) open link(s) keep \(old.maxFrame)") }
        }
        if new.reconnectMax != old.reconnectMax {
            report.settingsChanged.append("reconnect_max \(old.reconnectMax.wholeMilliseconds) -> \(new.reconnectMax.wholeMilliseconds)")
            // Starts the backoff over: a peer refused before this reload is retried soon.
            for peer in peers.values { peer.backoff = ReconnectBackoff(cap: new.reconnectMax) }
        }
    }
}
