import Testing
@testable import ClusterSupervisor
#if canImport(Glibc)
import Glibc
#endif

private let shell = ChildSpawner(executable: "/bin/sh", argv0: "sh")

private func run(_ script: String) throws -> ChildExit? {
    let pid = try shell.spawn(arguments: ["-c", script])
    var status: Int32 = 0
    var reaped: pid_t
    repeat { reaped = waitpid(pid, &status, 0) } while reaped < 0 && errno == EINTR
    #expect(reaped == pid)
    return ChildExit(waitStatus: status)
}

private func temporaryPath() -> String {
    var template = Array("/tmp/chatmesh-spawn-XXXXXX".utf8CString)
    let fd = mkstemp(&template)
    close(fd)
    return String(cString: template)
}

private func contents(_ path: String) -> String {
    guard let file = fopen(path, "r") else { return "" }
    defer { fclose(file) }
    var text = ""
    var buffer = [CChar](repeating: 0, count: 4096)
    while fgets(&buffer, Int32(buffer.count), file) != nil { text += String(cString: buffer) }
    return text
}

@Test func spawnedChildExitStatusesAreDecoded() throws {
    #expect(try run("exit 0") == .exited(0))
    #expect(try run("exit 3") == .exited(3))
    #expect(try run("kill -9 $$") == .signaled(SIGKILL))
    #expect(try run("kill -TERM $$") == .signaled(SIGTERM))
}

@Test func spawnedChildStartsWithDefaultSignalsAndNoInheritedDescriptors() throws {
    // A descriptor without O_CLOEXEC, as a careless library might leave one.
    let leaky = open("/dev/null", O_RDONLY)
    defer { close(leaky) }
    // What the supervisor does to itself, which must not reach the nodes: ignore SIGPIPE
    // and SIGHUP, and block signals in the spawning thread (as dispatch workers do).
    let oldPipe = signal(SIGPIPE, SIG_IGN)
    let oldHangup = signal(SIGHUP, SIG_IGN)
    var block = sigset_t(), oldMask = sigset_t()
    sigemptyset(&block)
    sigaddset(&block, SIGUSR1)
    pthread_sigmask(SIG_BLOCK, &block, &oldMask)
    defer {
        pthread_sigmask(SIG_SETMASK, &oldMask, nil)
        signal(SIGPIPE, oldPipe)
        signal(SIGHUP, oldHangup)
    }
    let path = temporaryPath()
    defer { unlink(path) }
    #expect(leaky > 2)
    // Exit 7 if the descriptor made it into the child (checked before any redirection, as
    // the shell keeps descriptors of its own while one is in effect). The signal state is
    // read by grep itself: the shell blocks signals while it waits for a command.
    #expect(try run("[ -e /proc/$$/fd/\(leaky) ] && exit 7; [ -e /proc/$$/fd/2 ] || exit 8; exec grep -E '^Sig(Blk|Ign)' /proc/self/status > \(path)") == .exited(0))
    let lines = contents(path).split(separator: "\n").map(String.init)
    let blocked = lines.first { $0.hasPrefix("SigBlk:") }.map { UInt64($0.dropFirst(7).trimmingCharacters(), radix: 16) }
    #expect(blocked == 0)
    let ignored = lines.first { $0.hasPrefix("SigIgn:") }.flatMap { UInt64($0.dropFirst(7).trimmingCharacters(), radix: 16) } ?? .max
    for number in [SIGTERM, SIGINT, SIGHUP, SIGPIPE] {
        #expect(ignored & (1 << UInt64(number - 1)) == 0, "signal \(number) is ignored in the child")
    }
}

@Test func spawningAMissingProgramFailsWithTheReason() {
    let missing = ChildSpawner(executable: "/nonexistent/chatmesh", argv0: "chatmesh")
    #expect(throws: SpawnError.self) { try missing.spawn(arguments: ["serve"]) }
    do {
        _ = try missing.spawn(arguments: [])
    } catch {
        #expect(error.description == "cannot start /nonexistent/chatmesh: No such file or directory")
    }
}

extension Substring {
    fileprivate func trimmingCharacters() -> String {
        String(drop { $0 == " " || $0 == "\t" })
    }
}
