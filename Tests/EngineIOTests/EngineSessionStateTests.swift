import Testing
@testable import EngineIO

@Suite("EngineSessionState")
struct EngineSessionStateTests {
    private let probePing = EnginePacket(.ping, .text("probe"))
    private let upgradePacket = EnginePacket(.upgrade)
    /// The socket.io-protocol test suite's timing: ping 300 ms after the open, pong within 200 ms.
    private let heartbeat = EngineHeartbeat(pingIntervalMs: 300, pingTimeoutMs: 200, openedAt: 0)
    private static let ms: UInt64 = 1_000_000

    /// A polling session with its probe answered, one `5` away from upgrading.
    private func answeredProbe() -> EngineSessionState {
        var state = EngineSessionState(transport: .polling, heartbeat: heartbeat)
        _ = state.beginUpgrade()
        _ = state.receive(probePing, from: .probe, now: 0)
        return state
    }

    @Test func pollingSessionStartsInPollingPhase() {
        let state = EngineSessionState(transport: .polling, heartbeat: heartbeat)
        #expect(state.phase == .polling)
        #expect(state.sendsOverPolling)
        #expect(!state.isUpgrading)
        #expect(!state.isClosed)
        #expect(!state.awaitingPong)
    }

    @Test func websocketSessionStartsInWebsocketPhase() {
        let state = EngineSessionState(transport: .websocket, heartbeat: heartbeat)
        #expect(state.phase == .websocket)
        #expect(!state.sendsOverPolling)
        #expect(!state.isUpgrading)
    }

    @Test(arguments: [EngineRequest.Transport.polling, .websocket])
    func messagesAreDeliveredToTheLayerAbove(transport: EngineRequest.Transport) {
        var state = EngineSessionState(transport: transport, heartbeat: heartbeat)
        let reaction = state.receive(.message(#"2["say",{"text":"hi"}]"#), from: .primary, now: 0)
        #expect(reaction == .deliver(.text(#"2["say",{"text":"hi"}]"#)))
        let reaction2 = state.receive(.binaryMessage([9, 8, 7]), from: .primary, now: 0)
        #expect(reaction2 == .deliver(.binary([9, 8, 7])))
        let reaction3 = state.receive(.message(""), from: .primary, now: 0)
        #expect(reaction3 == .deliver(.text("")))
    }

    @Test func pongIsIgnoredWhenNoneIsOwed() {
        var state = EngineSessionState(transport: .websocket, heartbeat: heartbeat)
        let reaction = state.receive(EnginePacket(.pong), from: .primary, now: 0)
        #expect(reaction == .none)
        #expect(!state.awaitingPong)
    }

    @Test func owedPongIsAHeartbeatOnlyOnceAndRestartsTheIntervalFromItsArrival() {
        var state = EngineSessionState(transport: .websocket, heartbeat: heartbeat)
        let ping = state.heartbeatDue(now: 300 * Self.ms)
        #expect(ping == .sendPing(pongDue: 500 * Self.ms))
        #expect(state.awaitingPong)
        let reaction = state.receive(EnginePacket(.pong), from: .primary, now: 350 * Self.ms)
        #expect(reaction == .heartbeat(nextPingAt: 650 * Self.ms))
        #expect(!state.awaitingPong)
        let reaction2 = state.receive(EnginePacket(.pong), from: .primary, now: 360 * Self.ms)
        #expect(reaction2 == .none)
        let early = state.heartbeatDue(now: 649 * Self.ms)
        #expect(early == .wait(until: 650 * Self.ms))
    }

    @Test func theFirstPingIsDueOneIntervalAfterTheOpen() {
        var state = EngineSessionState(transport: .polling, heartbeat: EngineHeartbeat(pingIntervalMs: 300, pingTimeoutMs: 200, openedAt: 1_000 * Self.ms))
        let early = state.heartbeatDue(now: 1_299 * Self.ms)
        #expect(early == .wait(until: 1_300 * Self.ms))
        let due = state.heartbeatDue(now: 1_300 * Self.ms)
        #expect(due == .sendPing(pongDue: 1_500 * Self.ms))
    }

    /// The reference server closes a silent session at pingInterval + pingTimeout after the open
    /// (socket.io-protocol's "should close the session upon ping timeout": a GET 500 ms after
    /// the handshake gets 400), however late our timer sent the ping.
    @Test(arguments: [UInt64(300), 320, 340])
    func aSilentSessionClosesAtIntervalPlusTimeoutEvenIfThePingWentOutLate(pingSentAtMs: UInt64) {
        var state = EngineSessionState(transport: .polling, heartbeat: heartbeat)
        let ping = state.heartbeatDue(now: pingSentAtMs * Self.ms)
        #expect(ping == .sendPing(pongDue: 500 * Self.ms))
        let before = state.heartbeatDue(now: 499 * Self.ms)
        #expect(before == .wait(until: 500 * Self.ms))
        let after = state.heartbeatDue(now: 500 * Self.ms)
        #expect(after == .close(.pingTimeout))
        #expect(state.phase == .closed(.pingTimeout))
    }

    @Test func aPingSentAfterAStallStillLeavesHalfTheTimeout() {
        var state = EngineSessionState(transport: .websocket, heartbeat: heartbeat)
        let ping = state.heartbeatDue(now: 2_000 * Self.ms)
        #expect(ping == .sendPing(pongDue: 2_100 * Self.ms))
    }

    @Test func aPongAfterItsDeadlineFindsTheSessionClosed() {
        var state = EngineSessionState(transport: .polling, heartbeat: heartbeat)
        _ = state.heartbeatDue(now: 300 * Self.ms)
        // The server looks at the heartbeat before it handles what the client sent.
        let due = state.heartbeatDue(now: 501 * Self.ms)
        #expect(due == .close(.pingTimeout))
        let reaction = state.receive(EnginePacket(.pong), from: .primary, now: 501 * Self.ms)
        #expect(reaction == .none)
    }

    @Test func pongDeadlineWithPongOwedClosesWithPingTimeout() {
        var state = EngineSessionState(transport: .polling, heartbeat: heartbeat)
        _ = state.heartbeatDue(now: 300 * Self.ms)
        let timedOut = state.heartbeatDue(now: 600 * Self.ms)
        #expect(timedOut == .close(.pingTimeout))
        #expect(state.phase == .closed(.pingTimeout))
        #expect(state.isClosed)
        #expect(!state.sendsOverPolling)
        let after = state.heartbeatDue(now: 700 * Self.ms)
        #expect(after == .stopped)
    }

    @Test func pongDeadlineAfterThePongDoesNothing() {
        var state = EngineSessionState(transport: .websocket, heartbeat: heartbeat)
        _ = state.heartbeatDue(now: 300 * Self.ms)
        _ = state.receive(EnginePacket(.pong), from: .primary, now: 310 * Self.ms)
        let due = state.heartbeatDue(now: 500 * Self.ms)
        #expect(due == .wait(until: 610 * Self.ms))
        #expect(state.phase == .websocket)
    }

    @Test func aPendingPollIsReleasedWithNoopOnTheClientsCloseAndWithCloseOtherwise() {
        #expect(EngineSessionState.CloseReason.clientClose.pendingPollRelease == .noop)
        for reason in [EngineSessionState.CloseReason.pingTimeout, .parseError, .transportClose, .transportError,
                       .outboundOverflow, .serverClose] {
            #expect(reason.pendingPollRelease == .close, "\(reason)")
        }
    }

    @Test func closePacketFromClientClosesTheSession() {
        var state = EngineSessionState(transport: .websocket, heartbeat: heartbeat)
        let reaction = state.receive(EnginePacket(.close), from: .primary, now: 0)
        #expect(reaction == .close(.clientClose))
        #expect(state.phase == .closed(.clientClose))
    }

    @Test(arguments: [EnginePacket(.open), EnginePacket(.ping), EnginePacket(.ping, .text("probe")),
                      EnginePacket(.upgrade), EnginePacket(.noop)])
    func controlPacketsAClientShouldNotSendAreIgnoredOnPrimary(packet: EnginePacket) {
        var state = EngineSessionState(transport: .polling, heartbeat: heartbeat)
        let reaction = state.receive(packet, from: .primary, now: 0)
        #expect(reaction == .none)
        #expect(state.phase == .polling)
    }

    @Test func fullUpgradeFlowEndsOnWebsocket() {
        var state = EngineSessionState(transport: .polling, heartbeat: heartbeat)
        let began = state.beginUpgrade()
        #expect(began)
        #expect(state.phase == .upgrading(probeAnswered: false))
        #expect(state.isUpgrading)
        #expect(state.sendsOverPolling)

        let reaction = state.receive(probePing, from: .probe, now: 0)
        #expect(reaction == .answerProbe)
        #expect(state.phase == .upgrading(probeAnswered: true))
        #expect(state.sendsOverPolling)

        let reaction2 = state.receive(upgradePacket, from: .probe, now: 0)
        #expect(reaction2 == .completeUpgrade)
        #expect(state.phase == .websocket)
        #expect(!state.sendsOverPolling)
        #expect(!state.isUpgrading)
    }

    @Test func primaryStillCarriesDataDuringTheUpgrade() {
        var state = answeredProbe()
        let reaction = state.receive(.message("during"), from: .primary, now: 0)
        #expect(reaction == .deliver(.text("during")))
        _ = state.heartbeatDue(now: 300 * Self.ms)
        let reaction2 = state.receive(EnginePacket(.pong), from: .primary, now: 320 * Self.ms)
        #expect(reaction2 == .heartbeat(nextPingAt: 620 * Self.ms))
        #expect(state.phase == .upgrading(probeAnswered: true))
    }

    @Test func upgradePacketBeforeTheProbePingAbortsTheProbe() {
        var state = EngineSessionState(transport: .polling, heartbeat: heartbeat)
        _ = state.beginUpgrade()
        let reaction = state.receive(upgradePacket, from: .probe, now: 0)
        #expect(reaction == .abortProbe)
        #expect(state.phase == .polling)
        #expect(state.sendsOverPolling)
    }

    @Test(arguments: [EnginePacket(.ping), EnginePacket(.ping, .text("probes")), .message("probe"),
                      EnginePacket(.pong, .text("probe")), EnginePacket(.close), EnginePacket(.noop),
                      .binaryMessage([1])])
    func anyOtherFirstProbePacketAbortsTheProbe(packet: EnginePacket) {
        var state = EngineSessionState(transport: .polling, heartbeat: heartbeat)
        _ = state.beginUpgrade()
        let reaction = state.receive(packet, from: .probe, now: 0)
        #expect(reaction == .abortProbe)
        #expect(state.phase == .polling)
    }

    @Test(arguments: [EnginePacket(.ping, .text("probe")), .message("x"), EnginePacket(.noop), EnginePacket(.close)])
    func anythingButUpgradeAfterTheAnsweredProbeAbortsTheProbe(packet: EnginePacket) {
        var state = answeredProbe()
        let reaction = state.receive(packet, from: .probe, now: 0)
        #expect(reaction == .abortProbe)
        #expect(state.phase == .polling)
        #expect(!state.isClosed)
    }

    @Test func abortedUpgradeMayBeRetried() {
        var state = EngineSessionState(transport: .polling, heartbeat: heartbeat)
        _ = state.beginUpgrade()
        _ = state.receive(upgradePacket, from: .probe, now: 0)
        let began = state.beginUpgrade()
        #expect(began)
        let reaction = state.receive(probePing, from: .probe, now: 0)
        #expect(reaction == .answerProbe)
        let reaction2 = state.receive(upgradePacket, from: .probe, now: 0)
        #expect(reaction2 == .completeUpgrade)
        #expect(state.phase == .websocket)
    }

    @Test func probeSocketClosingBeforeUpgradeReturnsToPolling() {
        var state = answeredProbe()
        state.abortUpgrade()
        #expect(state.phase == .polling)
    }

    @Test func abortUpgradeOutsideAnUpgradeChangesNothing() {
        var websocket = EngineSessionState(transport: .websocket, heartbeat: heartbeat)
        websocket.abortUpgrade()
        #expect(websocket.phase == .websocket)
        var polling = EngineSessionState(transport: .polling, heartbeat: heartbeat)
        polling.abortUpgrade()
        #expect(polling.phase == .polling)
    }

    @Test func secondBeginUpgradeIsRefused() {
        var state = EngineSessionState(transport: .polling, heartbeat: heartbeat)
        let began = state.beginUpgrade()
        #expect(began)
        let began2 = state.beginUpgrade()
        #expect(!began2)
        #expect(state.phase == .upgrading(probeAnswered: false))
        _ = state.receive(probePing, from: .probe, now: 0)
        let began3 = state.beginUpgrade()
        #expect(!began3)
        #expect(state.phase == .upgrading(probeAnswered: true))
    }

    @Test func upgradedSessionCannotUpgradeAgain() {
        var state = answeredProbe()
        _ = state.receive(upgradePacket, from: .probe, now: 0)
        let began = state.beginUpgrade()
        #expect(!began)
        #expect(state.phase == .websocket)
    }

    @Test func websocketBornSessionCannotUpgrade() {
        var state = EngineSessionState(transport: .websocket, heartbeat: heartbeat)
        let began = state.beginUpgrade()
        #expect(!began)
        let reaction = state.receive(probePing, from: .probe, now: 0)
        #expect(reaction == .abortProbe)
        let reaction2 = state.receive(upgradePacket, from: .probe, now: 0)
        #expect(reaction2 == .abortProbe)
        #expect(state.phase == .websocket)
    }

    @Test func probePacketsWithoutBeginUpgradeAreAborted() {
        var state = EngineSessionState(transport: .polling, heartbeat: heartbeat)
        let reaction = state.receive(probePing, from: .probe, now: 0)
        #expect(reaction == .abortProbe)
        #expect(state.phase == .polling)
    }

    @Test func serverCloseReportsOnlyTheFirstClose() {
        var state = EngineSessionState(transport: .polling, heartbeat: heartbeat)
        let closed = state.close(.serverClose)
        #expect(closed)
        let closed2 = state.close(.transportError)
        #expect(!closed2)
        #expect(state.phase == .closed(.serverClose))
    }

    @Test func nothingHappensAfterClose() {
        var state = EngineSessionState(transport: .polling, heartbeat: heartbeat)
        _ = state.heartbeatDue(now: 300 * Self.ms)
        let reaction = state.receive(EnginePacket(.close), from: .primary, now: 0)
        #expect(reaction == .close(.clientClose))

        let reaction2 = state.receive(.message("late"), from: .primary, now: 0)
        #expect(reaction2 == .none)
        let reaction3 = state.receive(EnginePacket(.pong), from: .primary, now: 0)
        #expect(reaction3 == .none)
        let reaction4 = state.receive(EnginePacket(.close), from: .primary, now: 0)
        #expect(reaction4 == .none)
        let reaction5 = state.receive(probePing, from: .probe, now: 0)
        #expect(reaction5 == .none)
        let reaction6 = state.receive(upgradePacket, from: .probe, now: 0)
        #expect(reaction6 == .none)
        let began = state.beginUpgrade()
        #expect(!began)
        state.abortUpgrade()
        let timedOut = state.heartbeatDue(now: 10_000 * Self.ms)
        #expect(timedOut == .stopped)
        let closed = state.close(.pingTimeout)
        #expect(!closed)
        #expect(state.phase == .closed(.clientClose))
    }

    @Test func closeDuringUpgradeEndsTheUpgrade() {
        var state = answeredProbe()
        state.close(.transportClose)
        let reaction = state.receive(upgradePacket, from: .probe, now: 0)
        #expect(reaction == .none)
        #expect(state.phase == .closed(.transportClose))
        #expect(!state.isUpgrading)
    }

    @Test func closeReasonsUseTheNodeServerWording() {
        #expect(EngineSessionState.CloseReason.clientClose.rawValue == "client close")
        #expect(EngineSessionState.CloseReason.pingTimeout.rawValue == "ping timeout")
        #expect(EngineSessionState.CloseReason.parseError.rawValue == "parse error")
        #expect(EngineSessionState.CloseReason.transportClose.rawValue == "transport close")
        #expect(EngineSessionState.CloseReason.transportError.rawValue == "transport error")
        #expect(EngineSessionState.CloseReason.outboundOverflow.rawValue == "outbound buffer overflow")
        #expect(EngineSessionState.CloseReason.serverClose.rawValue == "server close")
    }
}
