/// One value for each of the fanout's two Redis connections.
struct PerRole<Value> {
    var subscriber: Value
    var publisher: Value

    init(_ value: Value) {
        subscriber = value
        publisher = value
    }

    subscript(role: RedisLink.Role) -> Value {
        get {
            switch role {
            case .subscriber: subscriber
            case .publisher: publisher
            }
        }
        set {
            switch role {
            case .subscriber: subscriber = newValue
            case .publisher: publisher = newValue
            }
        }
    }
}
