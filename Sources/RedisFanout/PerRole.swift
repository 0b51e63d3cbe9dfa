/// One value for each of the fanout's two Redis connections. (A query link, which the
/// fanouts make only for one question, shares the publisher's: both are request/reply.)
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
            case .publisher, .query: publisher
            }
        }
        set {
            switch role {
            case .subscriber: subscriber = newValue
            case .publisher, .query: publisher = newValue
            }
        }
    }
}
