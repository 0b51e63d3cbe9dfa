import ClusterConfig
import Testing
@testable import ClusterSupervisor

private func response(_ text: String) -> [UInt8] { Array(text.utf8) }

@Test func chatmeshHealthzAnswerIsParsed() {
    let body = #"{"status":"ok","node":"a1","uptime_s":12.3,"connections":42,"rooms":3}"#
    let bytes = response("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n" + body)
    #expect(HealthzResponse.parse(bytes) == .success(HealthzReport(node: "a1", connections: 42)))
}

@Test func bodyWithoutContentLengthRunsToTheEnd() {
    let bytes = response("HTTP/1.0 200 OK\r\n\r\n{\"connections\": 0}")
    #expect(HealthzResponse.parse(bytes) == .success(HealthzReport(node: nil, connections: 0)))
}

@Test func contentLengthCutsTrailingBytes() {
    let bytes = response("HTTP/1.1 200 OK\r\ncontent-length:  17 \r\n\r\n{\"connections\":7}garbage")
    #expect(HealthzResponse.parse(bytes) == .success(HealthzReport(node: nil, connections: 7)))
}

@Test func chunkedBodyIsReassembled() {
    let bytes = response("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n9\r\n{\"connect\r\nB;ext=1\r\nions\":1234}\r\n0\r\n\r\n")
    #expect(HealthzResponse.parse(bytes) == .success(HealthzReport(node: nil, connections: 1234)))
}

@Test(arguments: [
    ("", "empty response"),
    ("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n", "incomplete HTTP header"),
    ("SSH-2.0-OpenSSH\r\n\r\n", "not an HTTP/1.x status line: SSH-2.0-OpenSSH"),
    ("HTTP/1.1 503 Service Unavailable\r\n\r\n{\"connections\":1}", "HTTP status 503"),
    ("HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n{\"connections\":1}", "body shorter than Content-Length (17 of 50 bytes)"),
    ("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "bad Content-Length '-1'"),
    ("HTTP/1.1 200 OK\r\n\r\n<html>", "body is not JSON: invalid JSON at byte 0: unexpected character"),
    ("HTTP/1.1 200 OK\r\n\r\n[1,2]", "body is not a JSON object"),
    ("HTTP/1.1 200 OK\r\n\r\n{\"status\":\"ok\"}", "no numeric 'connections' field"),
    ("HTTP/1.1 200 OK\r\n\r\n{\"connections\":\"5\"}", "no numeric 'connections' field"),
    ("HTTP/1.1 200 OK\r\n\r\n{\"connections\":-1}", "'connections' is not a count: -1.0"),
    ("HTTP/1.1 200 OK\r\n\r\n{\"connections\":1.5}", "'connections' is not a count: 1.5"),
    ("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "bad chunk size 'zz'"),
    ("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n{}", "truncated chunked body"),
])
func badAnswersAreFailuresWithAReason(text: String, reason: String) {
    #expect(HealthzResponse.parse(response(text)) == .failure(HealthzError(reason)))
}

@Test func wildcardListenIsPolledThroughLoopback() {
    #expect(HealthzClient.target(for: HostPort(host: "0.0.0.0", port: 6001)) == ("127.0.0.1", 6001))
    #expect(HealthzClient.target(for: HostPort(host: "::", port: 6001)) == ("::1", 6001))
    #expect(HealthzClient.target(for: HostPort(host: "10.0.0.5", port: 6001)) == ("10.0.0.5", 6001))
    #expect(HealthzClient.target(for: HostPort(host: "localhost", port: 6001)) == ("localhost", 6001))
}

@Test func requestAsksForHealthzAndClosesTheConnection() {
    let request = HealthzClient.request(for: HostPort(host: "::1", port: 6001))
    #expect(request.hasPrefix("GET /healthz HTTP/1.1\r\nHost: [::1]:6001\r\n"))
    #expect(request.contains("\r\nConnection: close\r\n"))
    #expect(request.hasSuffix("\r\n\r\n"))
}

@Test func tallyLogsTheTotalOnlyWhenItChanges() {
    var tally = ConnectionTally(nodes: ["a1", "a2"])
    #expect(tally.changeMessage() == nil)  // nobody answered yet: nothing to say
    tally.record("a1", connections: 3)
    #expect(tally.changeMessage() == "cluster connections: 3 (not answering: a2)")
    tally.record("a2", connections: 0)
    #expect(tally.changeMessage() == "cluster connections: 3")
    tally.record("a1", connections: 3)
    #expect(tally.changeMessage() == nil)
    tally.record("a1", connections: 1)
    tally.record("a2", connections: 2)
    #expect(tally.changeMessage() == nil)  // moved between nodes, total unchanged
    tally.record("a2", connections: 5)
    #expect(tally.changeMessage() == "cluster connections: 6")
    #expect(tally.perNode == "a1=1 a2=5")
}

@Test func failedPollMakesANodeUnknownNotZero() {
    var tally = ConnectionTally(nodes: ["a1", "a2"])
    tally.record("a1", connections: 4)
    tally.record("a2", connections: 6)
    _ = tally.changeMessage()
    tally.record("a2", connections: nil)
    #expect(tally.current == ConnectionTally.Report(total: 4, unknown: ["a2"]))
    #expect(tally.changeMessage() == "cluster connections: 4 (not answering: a2)")
    #expect(tally.perNode == "a1=4 a2=?")
    tally.record("a1", connections: nil)
    #expect(tally.changeMessage() == "cluster connections: unknown (not answering: a1, a2)")
    tally.record("a1", connections: 4)
    tally.record("a2", connections: 6)
    #expect(tally.changeMessage() == "cluster connections: 10")
}
