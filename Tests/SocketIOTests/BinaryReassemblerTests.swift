import Testing
@testable import SocketIO

@Suite("BinaryReassembler")
struct BinaryReassemblerTests {
    private func packet(_ text: String) throws -> SocketPacket {
        try SocketPacketCodec.decode(Substring(text))
    }

    private func placeholder(_ num: Int) -> String { #"{"_placeholder":true,"num":\#(num)}"# }

    @Test func textPacketPassesStraightThrough() throws {
        var reassembler = BinaryReassembler()
        let event = try packet(#"2["say",{"text":"hi"}]"#)
        let result = try reassembler.receive(event)
        #expect(result == event)
        #expect(!reassembler.isWaitingForAttachments)
    }

    @Test func oneAttachmentReplacesItsPlaceholder() throws {
        var reassembler = BinaryReassembler()
        let result = try reassembler.receive(try packet(#"51-["upload",\#(placeholder(0))]"#))
        #expect(result == nil)
        #expect(reassembler.isWaitingForAttachments)
        let complete = try #require(try reassembler.receive(attachment: [0xDE, 0xAD]))
        #expect(complete.type == .binaryEvent)
        #expect(complete.data == .array([.string("upload"), .binary([0xDE, 0xAD])]))
        #expect(complete.eventNameAndArguments?.arguments == [.binary([0xDE, 0xAD])])
        #expect(!reassembler.isWaitingForAttachments)
    }

    @Test func severalAttachmentsGoWhereTheirNumbersSay() throws {
        var reassembler = BinaryReassembler()
        let result = try reassembler.receive(try packet(#"53-7["files",\#(placeholder(2)),\#(placeholder(0)),\#(placeholder(1))]"#))
        #expect(result == nil)
        let result2 = try reassembler.receive(attachment: [0])
        #expect(result2 == nil)
        #expect(reassembler.isWaitingForAttachments)
        let result3 = try reassembler.receive(attachment: [1, 1])
        #expect(result3 == nil)
        let complete = try #require(try reassembler.receive(attachment: [2, 2, 2]))
        #expect(complete.ackID == 7)
        #expect(complete.data == .array([.string("files"), .binary([2, 2, 2]), .binary([0]), .binary([1, 1])]))
    }

    @Test func nestedPlaceholdersInObjectsAndArraysAreReplaced() throws {
        var reassembler = BinaryReassembler()
        let header = #"52-/admin,["up",{"meta":{"name":"a.png"},"parts":[\#(placeholder(0)),{"deep":[\#(placeholder(1))]}]}]"#
        _ = try reassembler.receive(try packet(header))
        _ = try reassembler.receive(attachment: [10])
        let complete = try #require(try reassembler.receive(attachment: [20]))
        #expect(complete.namespace == "/admin")
        #expect(complete.data == .array([
            .string("up"),
            .object([
                ("meta", .object([("name", .string("a.png"))])),
                ("parts", .array([.binary([10]), .object([("deep", .array([.binary([20])]))])])),
            ]),
        ]))
    }

    @Test func binaryAckIsReassembledToo() throws {
        var reassembler = BinaryReassembler()
        _ = try reassembler.receive(try packet(#"61-12[\#(placeholder(0))]"#))
        let complete = try #require(try reassembler.receive(attachment: []))
        #expect(complete.type == .binaryAck)
        #expect(complete.ackID == 12)
        #expect(complete.data == .array([.binary([])]))
    }

    @Test func sameAttachmentMayBeReferencedTwice() throws {
        var reassembler = BinaryReassembler()
        _ = try reassembler.receive(try packet(#"51-["x",\#(placeholder(0)),\#(placeholder(0))]"#))
        let complete = try #require(try reassembler.receive(attachment: [7]))
        #expect(complete.data == .array([.string("x"), .binary([7]), .binary([7])]))
    }

    @Test func zeroAttachmentBinaryEventIsCompleteAtOnce() throws {
        var reassembler = BinaryReassembler()
        let header = try packet(#"50-["x",1]"#)
        let result = try reassembler.receive(header)
        #expect(result == header)
        #expect(!reassembler.isWaitingForAttachments)
    }

    @Test func readyForTheNextPacketAfterReassembly() throws {
        var reassembler = BinaryReassembler()
        _ = try reassembler.receive(try packet(#"51-["a",\#(placeholder(0))]"#))
        _ = try reassembler.receive(attachment: [1])
        _ = try reassembler.receive(try packet(#"51-["b",\#(placeholder(0))]"#))
        let second = try #require(try reassembler.receive(attachment: [2]))
        #expect(second.data == .array([.string("b"), .binary([2])]))
    }

    @Test(arguments: [
        #"51-["x",{"_placeholder":true,"num":1}]"#,
        #"51-["x",{"_placeholder":true,"num":-1}]"#,
        #"51-["x",{"_placeholder":true,"num":0.5}]"#,
        #"51-["x",{"_placeholder":true,"num":"0"}]"#,
        #"51-["x",{"_placeholder":true}]"#,
        #"51-["x",{"_placeholder":true,"num":null}]"#,
        #"51-["x",{"_placeholder":true,"num":1e300}]"#,
        #"51-["x",{"_placeholder":true,"num":9223372036854775808}]"#,
        #"51-["x",[{"_placeholder":true,"num":5}]]"#,
    ])
    func placeholderOutOfRangeIsRejected(header: String) throws {
        var reassembler = BinaryReassembler()
        _ = try reassembler.receive(try packet(header))
        #expect(throws: SocketIOError.invalidPlaceholder) { try reassembler.receive(attachment: [1]) }
        #expect(!reassembler.isWaitingForAttachments)
    }

    @Test func placeholderInAZeroAttachmentPacketIsRejectedAtOnce() throws {
        var reassembler = BinaryReassembler()
        let header = try packet(#"50-["x",{"_placeholder":true,"num":0}]"#)
        #expect(throws: SocketIOError.invalidPlaceholder) { try reassembler.receive(header) }
    }

    @Test func objectThatOnlyLooksLikeAPlaceholderIsKept() throws {
        var reassembler = BinaryReassembler()
        _ = try reassembler.receive(try packet(#"51-["x",{"_placeholder":false,"num":0},{"_placeholder":"true","num":0},\#(placeholder(0))]"#))
        let complete = try #require(try reassembler.receive(attachment: [3]))
        #expect(complete.data == .array([
            .string("x"),
            .object([("_placeholder", .bool(false)), ("num", .number(0))]),
            .object([("_placeholder", .string("true")), ("num", .number(0))]),
            .binary([3]),
        ]))
    }

    @Test func attachmentWithNoHeaderIsRejected() {
        var reassembler = BinaryReassembler()
        #expect(throws: SocketIOError.unexpectedBinaryAttachment) { try reassembler.receive(attachment: [1]) }
    }

    @Test func attachmentAfterTheLastOneIsRejected() throws {
        var reassembler = BinaryReassembler()
        _ = try reassembler.receive(try packet(#"51-["x",\#(placeholder(0))]"#))
        _ = try reassembler.receive(attachment: [1])
        #expect(throws: SocketIOError.unexpectedBinaryAttachment) { try reassembler.receive(attachment: [2]) }
    }

    @Test func textPacketWhileWaitingIsRejected() throws {
        var reassembler = BinaryReassembler()
        _ = try reassembler.receive(try packet(#"52-["x",\#(placeholder(0)),\#(placeholder(1))]"#))
        _ = try reassembler.receive(attachment: [1])
        let event = try packet(#"2["say",{}]"#)
        #expect(throws: SocketIOError.expectedBinaryAttachment) { try reassembler.receive(event) }
        #expect(reassembler.isWaitingForAttachments)
    }
}
