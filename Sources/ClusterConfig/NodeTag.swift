/// A node's **tag**: 4 characters that name it inside the Engine.IO session ids it makes, so
/// any node that receives a request for a session can tell which node owns it (docs/RELAY.md).
///
/// The tag is 24 bits of FNV-1a-64 over the UTF-8 node name, xor-folded (as the FNV authors
/// advise for widths below 64), written as 4 characters of base64url (`A-Z a-z 0-9 - _`).
/// It is not a cryptographic hash on purpose: the tag is public (it is in every sid the node
/// hands out) and only routes, so there is nothing to keep secret or unforgeable in it; what
/// makes a sid unguessable is its 96 random bits. FNV is tiny, has no dependencies and gives
/// the same tag on every host and in every release, which is all routing needs. Two nodes of
/// one cluster.conf with the same tag are refused when the config is loaded, so within a
/// cluster a tag names exactly one node.
public enum NodeTag {
    /// Characters in a tag.
    public static let length = 4

    /// The base64url alphabet (RFC 4648 §5), which sids use too.
    static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)

    /// The tag of the node called `nodeName`.
    public static func of(nodeName: String) -> String {
        text(of: bits(fnv1a64(nodeName)))
    }

    /// FNV-1a, 64 bits: for each byte, xor it in, then multiply by the FNV prime.
    static func fnv1a64(_ name: String) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in name.utf8 {
            hash ^= UInt64(byte)
            hash &*= 0x0000_0100_0000_01b3
        }
        return hash
    }

    /// The 24 bits a tag carries: the 64-bit hash xor-folded, so every bit of it counts.
    static func bits(_ hash: UInt64) -> UInt32 {
        UInt32(truncatingIfNeeded: (hash ^ (hash >> 24) ^ (hash >> 48)) & 0xFF_FFFF)
    }

    /// 24 bits as 4 base64url characters, most significant first.
    static func text(of bits: UInt32) -> String {
        let characters = [18, 12, 6, 0].map { alphabet[Int((bits >> UInt32($0)) & 0x3F)] }
        return String(decoding: characters, as: UTF8.self)
    }
}
