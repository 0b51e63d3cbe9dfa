import ClusterConfig

/// One shard of a Redis Cluster: a primary, its replicas, and the slot ranges it serves.
public struct RedisShard: Sendable, Equatable {
    public var primary: HostPort
    public var replicas: [HostPort]
    /// Sorted, disjoint, with adjacent ranges joined (`0...5460`, not `0...100, 101...5460`).
    public var slots: [ClosedRange<Int>]
    /// The primary's node id, when the reply names it.
    public var id: String?

    public init(primary: HostPort, replicas: [HostPort] = [], slots: [ClosedRange<Int>], id: String? = nil) {
        self.primary = primary
        self.replicas = replicas
        self.slots = slots
        self.id = id
    }
}

/// Why a topology reply was rejected; says which entry and what was wrong with it.
public struct RedisTopologyError: Error, Equatable, Sendable, CustomStringConvertible {
    public var description: String

    public init(_ description: String) { self.description = description }
}

/// Which node serves which hash slot: the shards of a Redis Cluster, from its `CLUSTER SLOTS`
/// reply, with a slot → shard table so routing a channel costs one array read.
public struct RedisClusterTopology: Sendable, Equatable {
    /// Ordered by first slot.
    public private(set) var shards: [RedisShard]
    /// `slotOwner[slot]` is the index into `shards`, or `unowned`; 32 KB for all 16384 slots.
    private var slotOwner: [UInt16]
    private static let unowned = UInt16.max

    /// Builds the table from shards (any order: they are sorted by first slot, and each
    /// shard's ranges sorted and joined). Fails for a slot outside 0-16383, a range whose start
    /// is past its end, a shard without slots, or a slot claimed twice.
    public init(shards: [RedisShard]) throws(RedisTopologyError) {
        var shards = shards
        for index in shards.indices {
            let shard = shards[index]
            guard !shard.slots.isEmpty else { throw RedisTopologyError("shard \(shard.primary) serves no slot") }
            for range in shard.slots where range.lowerBound < 0 || range.upperBound >= RedisHashSlot.count {
                throw RedisTopologyError("shard \(shard.primary): slot range \(Self.text(range)) is outside 0-\(RedisHashSlot.count - 1)")
            }
            shards[index].slots = Self.joined(shard.slots)
        }
        shards.sort { $0.slots[0].lowerBound < $1.slots[0].lowerBound }
        guard shards.count < Int(Self.unowned) else {
            throw RedisTopologyError("\(shards.count) shards: more than there are slots")
        }
        var owner = [UInt16](repeating: Self.unowned, count: RedisHashSlot.count)
        for (index, shard) in shards.enumerated() {
            for range in shard.slots {
                for slot in range {
                    let previous = owner[slot]
                    guard previous == Self.unowned || Int(previous) == index else {
                        throw RedisTopologyError("slot \(slot) is claimed by both \(shards[Int(previous)].primary) and \(shard.primary)")
                    }
                    guard previous == Self.unowned else {
                        throw RedisTopologyError("shard \(shard.primary) lists slot \(slot) twice")
                    }
                    owner[slot] = UInt16(index)
                }
            }
        }
        self.shards = shards
        self.slotOwner = owner
    }

    /// The index into `shards` of the shard serving `slot`; nil for an unassigned slot or a
    /// number outside 0-16383.
    public func shardIndex(forSlot slot: Int) -> Int? {
        guard slot >= 0, slot < slotOwner.count else { return nil }
        let owner = slotOwner[slot]
        return owner == Self.unowned ? nil : Int(owner)
    }

    /// The shard serving `slot`, if any.
    public func shard(forSlot slot: Int) -> RedisShard? {
        shardIndex(forSlot: slot).map { shards[$0] }
    }

    /// True when every one of the 16384 slots has a shard (`cluster_state:ok` needs it, unless
    /// `cluster-require-full-coverage` is off).
    public var coversEverySlot: Bool {
        !slotOwner.contains(Self.unowned)
    }

    /// Every node named, primaries first (in shard order), then replicas; each once. The
    /// addresses to try in turn when the topology must be read again.
    public var nodes: [HostPort] {
        var seen = Set<HostPort>()
        var nodes: [HostPort] = []
        for address in shards.map(\.primary) + shards.flatMap(\.replicas) where seen.insert(address).inserted {
            nodes.append(address)
        }
        return nodes
    }

    public static func == (lhs: RedisClusterTopology, rhs: RedisClusterTopology) -> Bool {
        lhs.shards == rhs.shards   // the table follows from the shards
    }

    // MARK: CLUSTER SLOTS

    /// Parses a `CLUSTER SLOTS` reply (RESP2): an array with one entry per slot range,
    /// `[start, end, primary, replica...]`, each node `[endpoint, port, id?, metadata?...]`.
    /// Ranges of one primary (by address) become one shard. An endpoint that is null or ""
    /// means "the address you asked" (Redis's unknown endpoint), so `askedHost` fills it in;
    /// "?" (a host name wanted but none announced) takes the node's ip from its metadata, or
    /// `askedHost` without one. Anything malformed is a failure naming the entry and what is
    /// wrong.
    public static func parse(clusterSlots reply: RESPValue, askedHost: String) -> Result<RedisClusterTopology, RedisTopologyError> {
        do throws(RedisTopologyError) {
            return .success(try parseSlots(reply, askedHost: askedHost))
        } catch {
            return .failure(error)
        }
    }

    private static func parseSlots(_ reply: RESPValue, askedHost: String) throws(RedisTopologyError) -> RedisClusterTopology {
        let entries: [RESPValue]
        switch reply {
        case .array(let array?): entries = array
        case .error(let text): throw RedisTopologyError("CLUSTER SLOTS failed: \(clipped(text))")
        default: throw RedisTopologyError("CLUSTER SLOTS reply is \(kind(reply)), expected an array of slot ranges")
        }
        guard !entries.isEmpty else {
            throw RedisTopologyError("CLUSTER SLOTS reply lists no slot ranges: the cluster has no slots assigned")
        }
        var shards: [RedisShard] = []
        var shardOfPrimary: [HostPort: Int] = [:]
        for (number, entry) in entries.enumerated() {
            let context = "CLUSTER SLOTS entry \(number)"
            guard case .array(let fields?) = entry else {
                throw RedisTopologyError("\(context) is \(kind(entry)), expected [start, end, primary, replicas...]")
            }
            guard fields.count >= 3 else {
                throw RedisTopologyError("\(context) has \(fields.count) elements, expected at least 3 (start, end, primary)")
            }
            let start = try slot(fields[0], "start", context)
            let end = try slot(fields[1], "end", context)
            guard start <= end else { throw RedisTopologyError("\(context): slot range \(start)-\(end) starts after it ends") }
            let primary = try node(fields[2], "primary", context, askedHost: askedHost)
            var replicas: [HostPort] = []
            for (offset, field) in fields.dropFirst(3).enumerated() {
                replicas.append(try node(field, "replica \(offset + 1)", context, askedHost: askedHost).address)
            }
            if let index = shardOfPrimary[primary.address] {
                if let id = primary.id, let known = shards[index].id, id != known {
                    throw RedisTopologyError("\(context): primary \(primary.address) has node id \(clipped(id)) here and \(clipped(known)) in an earlier entry")
                }
                if shards[index].id == nil { shards[index].id = primary.id }
                shards[index].slots.append(start...end)
                for replica in replicas where !shards[index].replicas.contains(replica) {
                    shards[index].replicas.append(replica)
                }
            } else {
                shardOfPrimary[primary.address] = shards.count
                shards.append(RedisShard(primary: primary.address, replicas: replicas, slots: [start...end], id: primary.id))
            }
        }
        return try RedisClusterTopology(shards: shards)
    }

    private static func slot(_ value: RESPValue, _ name: String, _ context: String) throws(RedisTopologyError) -> Int {
        guard case .integer(let number) = value else {
            throw RedisTopologyError("\(context): \(name) slot is \(kind(value)), expected an integer")
        }
        guard number >= 0, number < RedisHashSlot.count else {
            throw RedisTopologyError("\(context): \(name) slot \(number) is outside 0-\(RedisHashSlot.count - 1)")
        }
        return Int(number)
    }

    private static func node(_ value: RESPValue, _ role: String, _ context: String,
                             askedHost: String) throws(RedisTopologyError) -> (address: HostPort, id: String?) {
        guard case .array(let fields?) = value else {
            throw RedisTopologyError("\(context): \(role) is \(kind(value)), expected [endpoint, port, id...]")
        }
        guard fields.count >= 2 else {
            throw RedisTopologyError("\(context): \(role) has \(fields.count) elements, expected at least endpoint and port")
        }
        let host: String
        switch fields[0] {
        case .bulkString(nil): host = askedHost
        case .bulkString, .simpleString:
            let text = fields[0].string!
            if text == "?" {
                // Preferred endpoint "hostname" but none announced: the ip the metadata
                // gives (Redis 7 sends it there), else the address asked.
                host = metadata(fields.count > 3 ? fields[3] : nil, "ip") ?? askedHost
            } else {
                host = text.isEmpty ? askedHost : text
            }
        default:
            throw RedisTopologyError("\(context): \(role) endpoint is \(kind(fields[0])), expected a string")
        }
        guard case .integer(let port) = fields[1] else {
            throw RedisTopologyError("\(context): \(role) port is \(kind(fields[1])), expected an integer")
        }
        guard (1...65_535).contains(port) else {
            throw RedisTopologyError("\(context): \(role) port \(port) is outside 1-65535")
        }
        let address: HostPort
        switch RedisNodeAddress.make(host: host, port: String(port)[...]) {
        case .success(let parsed): address = parsed
        case .failure(let error): throw RedisTopologyError("\(context): \(role) address: \(error)")
        }
        var id: String?
        if fields.count >= 3 {
            switch fields[2] {
            case .bulkString(let bytes?): id = String(buffer: bytes)
            case .simpleString(let text): id = text
            default: throw RedisTopologyError("\(context): \(role) node id is \(kind(fields[2])), expected a string")
            }
        }
        return (address, id)
    }

    /// A value of a node's metadata (Redis 7: a RESP2 array of key, value, key, value...).
    private static func metadata(_ value: RESPValue?, _ key: String) -> String? {
        guard case .array(let pairs?)? = value else { return nil }
        var index = 0
        while index + 1 < pairs.count {
            if pairs[index].string == key, let text = pairs[index + 1].string, !text.isEmpty { return text }
            index += 2
        }
        return nil
    }

    /// Ranges sorted by start, overlapping or adjacent ones joined; the overlap check is the
    /// table's (a range listed twice is caught there).
    private static func joined(_ ranges: [ClosedRange<Int>]) -> [ClosedRange<Int>] {
        var result: [ClosedRange<Int>] = []
        for range in ranges.sorted(by: { $0.lowerBound < $1.lowerBound }) {
            if let last = result.last, last.upperBound + 1 == range.lowerBound {
                result[result.count - 1] = last.lowerBound...range.upperBound
            } else {
                result.append(range)
            }
        }
        return result
    }

    static func text(_ range: ClosedRange<Int>) -> String {
        range.lowerBound == range.upperBound ? "\(range.lowerBound)" : "\(range.lowerBound)-\(range.upperBound)"
    }

    private static func kind(_ value: RESPValue) -> String {
        switch value {
        case .simpleString: return "a simple string"
        case .error(let text): return "an error (\(clipped(text)))"
        case .integer(let number): return "the integer \(number)"
        case .bulkString(nil): return "a null bulk string"
        case .bulkString: return "a bulk string"
        case .array(nil): return "a null array"
        case .array(let elements?): return "an array of \(elements.count)"
        }
    }
}

/// At most 80 characters of text from the network, so a hostile reply cannot flood a log line.
func clipped(_ text: String) -> String {
    text.count <= 80 ? "'\(text)'" : "'\(text.prefix(80))...'"
}

/// A node address named by a cluster (topology reply, redirect), checked as strictly as one
/// from the config file: a valid host name, IPv4 or IPv6 address, and a port 1-65535.
enum RedisNodeAddress {
    static func make(host: String, port: Substring) -> Result<HostPort, RedisTopologyError> {
        let text = host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        switch HostPort.parse(text) {
        case .success(let address): return .success(address)
        case .failure(let problem): return .failure(RedisTopologyError(problem.message))
        }
    }
}
