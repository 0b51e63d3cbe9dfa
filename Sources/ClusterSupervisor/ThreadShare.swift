/// How many event-loop threads a node runs when `serve --threads` is not given: the host's
/// cores shared among the nodes of cluster.conf that run on this host.
///
/// The original design runs one single-threaded process per core. Two nodes that each took one
/// loop per core would put twice as many busy threads as cores on the host; they then preempt
/// each other mid-tick, and a message waits for a time slice at every hop. On the 2-core bench
/// machine that doubled the CPU per delivery and the tail latency.
public enum ThreadShare {
    public static func threadsPerNode(cores: Int, localNodes: Int) -> Int {
        max(1, cores / max(1, localNodes))
    }
}
