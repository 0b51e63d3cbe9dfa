/// A connection that holds a live recoverable session (the engine's session).
public protocol RecoverableSession: AnyObject, Sendable {
    /// Another connection recovered this session: close without a quit. Called on the store's
    /// loop; the session hops to its own.
    func sessionTakenOver()
}
