/// One difference between the running cluster.conf and a new one, and whether a node can take
/// it without a restart (see `ConfigDiff`, and docs/CONFIG.md "What a reload changes").
public struct ConfigChange: Sendable, Equatable, CustomStringConvertible {
    /// Whether a reload applies the change.
    public enum Classification: Sendable, Equatable {
        /// A reload applies it; clients stay connected.
        case live
        /// A reload reports it and keeps the old value; it takes effect when `restartOn` restarts.
        case needsRestart
    }

    /// What changed.
    public enum Subject: Sendable, Equatable {
        /// `key` of `section` (for `[node NAME]` keys, `section` is "node" and `node` names it).
        case setting
        /// `[node NAME]` is in the new file only.
        case nodeAdded
        /// `[node NAME]` is in the old file only.
        case nodeRemoved
    }

    public var subject: Subject
    /// The section's header word, as in `ConfigSection.name`: "limits", "node".
    public var section: String
    /// The node of a `[node NAME]` key, or the node added / removed; nil for other sections.
    public var node: String?
    /// The key within the section; nil when a whole node is added or removed.
    public var key: String?
    /// The value as cluster.conf would spell it ("none" when unset); nil for an added node.
    /// Secrets and passwords are never shown, only whether they are set and whether they changed.
    public var oldValue: String?
    /// The new value; nil for a removed node.
    public var newValue: String?
    public var classification: Classification
    /// With `.needsRestart`: "every node", or the name of the one node to restart.
    public var restartOn: String?
    /// A few words printed after the classification, when they tell the operator something the
    /// key does not ("peers dial it", why every node must switch together); nil otherwise.
    public var note: String?

    public init(subject: Subject, section: String, node: String? = nil, key: String? = nil,
                oldValue: String?, newValue: String?, classification: Classification,
                restartOn: String? = nil, note: String? = nil) {
        self.subject = subject
        self.section = section
        self.node = node
        self.key = key
        self.oldValue = oldValue
        self.newValue = newValue
        self.classification = classification
        self.restartOn = restartOn
        self.note = note
    }

    /// `[limits] say_rate`, `[node a1] listen`, or `[node a4]` for a node added or removed.
    public var name: String {
        let header = node.map { "[\(section) \($0)]" } ?? "[\(section)]"
        return key.map { "\(header) \($0)" } ?? header
    }

    /// `live`, `live: peers dial it`, `needs restart on a1`,
    /// `needs restart on every node: both ends ...`.
    public var effect: String {
        var text: String
        switch classification {
        case .live: text = "live"
        case .needsRestart: text = "needs restart on \(restartOn ?? "every node")"
        }
        if let note { text += ": \(note)" }
        return text
    }

    /// One line for `chatmesh check-config --diff` and the reload log:
    /// `[limits] say_rate: 20 -> 50 (live)`, `node a4 added (live: peers dial it)`.
    public var description: String {
        switch subject {
        case .setting: return "\(name): \(oldValue ?? "none") -> \(newValue ?? "none") (\(effect))"
        case .nodeAdded: return "node \(node ?? "?") added (\(effect))"
        case .nodeRemoved: return "node \(node ?? "?") removed (\(effect))"
        }
    }
}
