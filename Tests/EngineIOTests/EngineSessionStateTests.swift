import Testing
@testable import EngineIO

@Suite("EngineSessionState")
struct EngineSessionStateTests {
    private let probePing = EnginePacket(.ping, .text("probe"))
    private let upgradePacket = EnginePacket(.upgrade)

    /// A polling session with its probe answered, one `5` away from upgrading.
    private func answeredProbe() -> EngineSessionState {
        var state = EngineSessionState(transport: .polling)
        _ = state.beginUpgrade()
        _ = state.receive(probePing, from: .probe)
        return state
    }

    @Test func pollingSessionStartsInPollingPhase() {
        let state = EngineSessionState(transport: .polling)
        #expect(state.phase == .polling)
        #expect(state.sendsOverPolling)
        #expect(!state.isUpgrading)
        #expect(!state.isClosed)
        #expect(!state.awaitingPong)
    }

    @Test func websocketSessionStartsInWebsocketPhase() {
        let state = EngineSessionState(transport: .websocket)
        #expect(state.phase == .websocket)
        #expect(!state.sendsOverPolling)
        #expect(!state.isUpgrading)
    }

    @Test(arguments: [EngineRequest.Transport.polling, .websocket])
    func messagesAreDeliveredToTheLayerAbove(transport: EngineRequest.Transport) {
        var state = EngineSessionState(transport: transport)
        let reaction = state.receive(.message(#"2["say",{"text":"hi"}]"#), from: .primary)
        #expect(reaction == .deliver(.text(#"2["say",{"text":"hi"}]"#)))
        let reaction2 = state.receive(.binaryMessage([9, 8, 7]), from: .primary)
        #expect(reaction2 == .deliver(.binary([9, 8, 7])))
        let reaction3 = state.receive(.message(""), from: .primary)
        #expect(reaction3 == .deliver(.text("")))
    }

    @Test func pongIsIgnoredWhenNoneIsOwed() {
        var state = EngineSessionState(transport: .websocket)
        let reaction = state.receive(EnginePacket(.pong), from: .primary)
        #expect(reaction == .none)
        #expect(!state.awaitingPong)
    }

    @Test func owedPongIsAHeartbeatOnlyOnce() {
        var state = EngineSessionState(transport: .websocket)
        state.pingSent()
        #expect(state.awaitingPong)
        let reaction = state.receive(EnginePacket(.pong), from: .primary)
        #expect(reaction == .heartbeat)
        #expect(!state.awaitingPong)
        let reaction2 = state.receive(EnginePacket(.pong), from: .primary)
        #expect(reaction2 == .none)
    }

    @Test func pongDeadlineWithPongOwedClosesWithPingTimeout() {
        var state = EngineSessionState(transport: .polling)
        state.pingSent()
        let timedOut = state.pongDeadlinePassed()
        #expect(timedOut == .pingTimeout)
        #expect(state.phase == .closed(.pingTimeout))
        #expect(state.isClosed)
        #expect(!state.sendsOverPolling)
    }

    @Test func pongDeadlineAfterThePongDoesNothing() {
        var state = EngineSessionState(transport: .websocket)
        state.pingSent()
        _ = state.receive(EnginePacket(.pong), from: .primary)
        let timedOut = state.pongDeadlinePassed()
        #expect(timedOut == nil)
        #expect(state.phase == .websocket)
    }

    @Test func pongDeadlineWithoutAPingDoesNothing() {
        var state = EngineSessionState(transport: .websocket)
        let timedOut = state.pongDeadlinePassed()
        #expect(timedOut == nil)
        #expect(!state.isClosed)
    }

    @Test func closePacketFromClientClosesTheSession() {
        var state = EngineSessionState(transport: .websocket)
        let reaction = state.receive(EnginePacket(.close), from: .primary)
        #expect(reaction == .close(.clientClose))
        #expect(state.phase == .closed(.clientClose))
    }

    @Test(arguments: [EnginePacket(.open), EnginePacket(.ping), EnginePacket(.ping, .text("probe")),
                      EnginePacket(.upgrade), EnginePacket(.noop)])
    func controlPacketsAClientShouldNotSendAreIgnoredOnPrimary(packet: EnginePacket) {
        var state = EngineSessionState(transport: .polling)
        let reaction = state.receive(packet, from: .primary)
        #expect(reaction == .none)
        #expect(state.phase == .polling)
    }

    @Test func fullUpgradeFlowEndsOnWebsocket() {
        var state = EngineSessionState(transport: .polling)
        let began = state.beginUpgrade()
        #expect(began)
        #expect(state.phase == .upgrading(probeAnswered: false))
        #expect(state.isUpgrading)
        #expect(state.sendsOverPolling)

        let reaction = state.receive(probePing, from: .probe)
        #expect(reaction == .answerProbe)
        #expect(state.phase == .upgrading(probeAnswered: true))
        #expect(state.sendsOverPolling)

        let reaction2 = state.receive(upgradePacket, from: .probe)
        #expect(reaction2 == .completeUpgrade)
        #expect(state.phase == .websocket)
        #expect(!state.sendsOverPolling)
        #expect(!state.isUpgrading)
    }

    @Test func primaryStillCarriesDataDuringTheUpgrade() {
        var state = answeredProbe()
        let reaction = state.receive(.message("during"), from: .primary)
        #expect(reaction == .deliver(.text("during")))
        state.pingSent()
        let reaction2 = state.receive(EnginePacket(.pong), from: .primary)
        #expect(reaction2 == .heartbeat)
        #expect(state.phase == .upgrading(probeAnswered: true))
    }

    @Test func upgradePacketBeforeTheProbePingAbortsTheProbe() {
        var state = EngineSessionState(transport: .polling)
        _ = state.beginUpgrade()
        let reaction = state.receive(upgradePacket, from: .probe)
        #expect(reaction == .abortProbe)
        #expect(state.phase == .polling)
        #expect(state.sendsOverPolling)
    }

    @Test(arguments: [EnginePacket(.ping), EnginePacket(.ping, .text("probes")), .message("probe"),
                      EnginePacket(.pong, .text("probe")), EnginePacket(.close), EnginePacket(.noop),
                      .binaryMessage([1])])
    func anyOtherFirstProbePacketAbortsTheProbe(packet: EnginePacket) {
        var state = EngineSessionState(transport: .polling)
        _ = state.beginUpgrade()
        let reaction = state.receive(packet, from: .probe)
        #expect(reaction == .abortProbe)
        #expect(state.phase == .polling)
    }

    @Test(arguments: [EnginePacket(.ping, .text("probe")), .message("x"), EnginePacket(.noop), EnginePacket(.close)])
    func anythingButUpgradeAfterTheAnsweredProbeAbortsTheProbe(packet: EnginePacket) {
        var state = answeredProbe()
        let reaction = state.receive(packet, from: .probe)
        #expect(reaction == .abortProbe)
        #expect(state.phase == .polling)
        #expect(!state.isClosed)
    }

    @Test func abortedUpgradeMayBeRetried() {
        var state = EngineSessionState(transport: .polling)
        _ = state.beginUpgrade()
        _ = state.receive(upgradePacket, from: .probe)
        let began = state.beginUpgrade()
        #expect(began)
        let reaction = state.receive(probePing, from: .probe)
        #expect(reaction == .answerProbe)
        let reaction2 = state.receive(upgradePacket, from: .probe)
        #expect(reaction2 == .completeUpgrade)
        #expect(state.phase == .websocket)
    }

    @Test func probeSocketClosingBeforeUpgradeReturnsToPolling() {
        var state = answeredProbe()
        state.abortUpgrade()
        #expect(state.phase == .polling)
    }

    @Test func abortUpgradeOutsideAnUpgradeChangesNothing() {
        var websocket = EngineSessionState(transport: .websocket)
        websocket.abortUpgrade()
        #expect(websocket.phase == .websocket)
        var polling = EngineSessionState(transport: .polling)
        polling.abortUpgrade()
        #expect(polling.phase == .polling)
    }

    @Test func secondBeginUpgradeIsRefused() {
        var state = EngineSessionState(transport: .polling)
        let began = state.beginUpgrade()
        #expect(began)
        let began2 = state.beginUpgrade()
        #expect(!began2)
        #expect(state.phase == .upgrading(probeAnswered: false))
        _ = state.receive(probePing, from: .probe)
        let began3 = state.beginUpgrade()
        #expect(!began3)
        #expect(state.phase == .upgrading(probeAnswered: true))
    }

    @Test func upgradedSessionCannotUpgradeAgain() {
        var state = answeredProbe()
        _ = state.receive(upgradePacket, from: .probe)
        let began = state.beginUpgrade()
        #expect(!began)
        #expect(state.phase == .websocket)
    }

    @Test func websocketBornSessionCannotUpgrade() {
        var state = EngineSessionState(transport: .websocket)
        let began = state.beginUpgrade()
        #expect(!began)
        let reaction = state.receive(probePing, from: .probe)
        #expect(reaction == .abortProbe)
        let reaction2 = state.receive(upgradePacket, from: .probe)
        #expect(reaction2 == .abortProbe)
        #expect(state.phase == .websocket)
    }

    @Test func probePacketsWithoutBeginUpgradeAreAborted() {
        var state = EngineSessionState(transport: .polling)
        let reaction = state.receive(probePing, from: .probe)
        #expect(reaction == .abortProbe)
        #expect(state.phase == .polling)
    }

    @Test func serverCloseReportsOnlyTheFirstClose() {
        var state = EngineSessionState(transport: .polling)
        let closed = state.close(.serverClose)
        #expect(closed)
        let closed2 = state.close(.transportError)
        #expect(!closed2)
        #expect(state.phase == .closed(.serverClose))
    }

    @Test func nothingHappensAfterClose() {
        var state = EngineSessionState(transport: .polling)
        state.pingSent()
        let reaction = state.receive(EnginePacket(.close), from: .primary)
        #expect(reaction == .close(.clientClose))

        let reaction2 = state.receive(.message("late"), from: .primary)
        #expect(reaction2 == .none)
        let reaction3 = state.receive(EnginePacket(.pong), from: .primary)
        #expect(reaction3 == .none)
        let reaction4 = state.receive(EnginePacket(.close), from: .primary)
        #expect(reaction4 == .none)
        let reaction5 = state.receive(probePing, from: .probe)
        #expect(reaction5 == .none)
        let reaction6 = state.receive(upgradePacket, from: .probe)
        #expect(reaction6 == .none)
        let began = state.beginUpgrade()
        #expect(!began)
        state.abortUpgrade()
        state.pingSent()
        let timedOut = state.pongDeadlinePassed()
        #expect(timedOut == nil)
        let closed = state.close(.pingTimeout)
        #expect(!closed)
        #expect(state.phase == .closed(.clientClose))
    }

    @Test func closeDuringUpgradeEndsTheUpgrade() {
        var state = answeredProbe()
        state.close(.transportClose)
        let reaction = state.receive(upgradePacket, from: .probe)
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
