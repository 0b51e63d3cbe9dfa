import Testing
@testable import ClusterSupervisor

@Test func backoffDoublesFromHalfASecondToTenSeconds() {
    var backoff = RestartBackoff()
    let delays = (0..<8).map { _ in backoff.nextDelay(ranFor: .milliseconds(100)) }
    #expect(delays == [
        .milliseconds(500), .seconds(1), .seconds(2), .seconds(4), .seconds(8), .seconds(10), .seconds(10), .seconds(10),
    ])
}

@Test func backoffResetsAfterThirtySecondsOfRunning() {
    var backoff = RestartBackoff()
    for _ in 0..<4 { _ = backoff.nextDelay(ranFor: .seconds(1)) }
    #expect(backoff.nextDelay(ranFor: .seconds(29)) == .seconds(8))
    #expect(backoff.nextDelay(ranFor: .seconds(30)) == .milliseconds(500))
    #expect(backoff.nextDelay(ranFor: .seconds(2)) == .seconds(1))
    #expect(backoff.nextDelay(ranFor: .seconds(3600)) == .milliseconds(500))
}

@Test func backoffStaysAtTheCapAfterManyFailures() {
    var backoff = RestartBackoff()
    for _ in 0..<10_000 { _ = backoff.nextDelay(ranFor: .zero) }
    #expect(backoff.nextDelay(ranFor: .zero) == .seconds(10))
    #expect(backoff.failures == 10_001)
}

@Test func backoffParametersAreAdjustable() {
    var backoff = RestartBackoff(initial: .milliseconds(100), cap: .milliseconds(350), resetAfter: .seconds(1))
    #expect((0..<4).map { _ in backoff.nextDelay(ranFor: .zero) } == [.milliseconds(100), .milliseconds(200), .milliseconds(350), .milliseconds(350)])
    #expect(backoff.nextDelay(ranFor: .seconds(1)) == .milliseconds(100))
}

@Test(arguments: [
    (Int32(0), ChildExit.exited(0)), (Int32(1 << 8), .exited(1)), (Int32(2 << 8), .exited(2)), (Int32(255 << 8), .exited(255)),
    (Int32(9), .signaled(9)), (Int32(15), .signaled(15)), (Int32(6 | 0x80), .signaled(6)),
])
func waitStatusesDecode(status: Int32, expected: ChildExit) {
    #expect(ChildExit(waitStatus: status) == expected)
}

@Test func onlyACleanExitIsNormal() {
    #expect(!ChildExit.exited(0).isAbnormal)
    #expect(ChildExit.exited(1).isAbnormal)
    #expect(ChildExit.signaled(15).isAbnormal)
    #expect(ChildExit(waitStatus: 0x137F) == nil)  // stopped by SIGSTOP
    #expect(ChildExit.signaled(9).description == "killed by signal 9 (SIGKILL)")
    #expect(ChildExit.exited(3).description == "exit status 3")
}

@Test func durationsAreLoggedInSeconds() {
    #expect(formatSeconds(.milliseconds(500)) == "0.5s")
    #expect(formatSeconds(.seconds(10)) == "10.0s")
    #expect(formatSeconds(.milliseconds(1234)) == "1.2s")
}
