// swift-tools-version:6.0
import PackageDescription

// Layers, lowest first (see README "Architecture"): pure codecs have no dependencies at all,
// so they can be unit-tested byte for byte and fuzzed; networking lives in ChatServer.
let package = Package(
    name: "chatmesh",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "chatmesh", targets: ["chatmesh"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift.git", from: "0.2.0"),
        .package(url: "https://github.com/apple/swift-collections.git", from: "1.1.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.0"),
    ],
    targets: [
        .systemLibrary(
            name: "CSystemd",
            pkgConfig: "libsystemd",
            providers: [.apt(["libsystemd-dev"])]
        ),
        .systemLibrary(
            name: "CLibCrypto",
            pkgConfig: "libcrypto",
            providers: [.apt(["libssl-dev"])]
        ),
        .target(name: "EngineIO"),
        .target(name: "SocketIO", dependencies: ["EngineIO"]),
        .target(
            name: "ClusterConfig",
            dependencies: [.product(name: "NIOCore", package: "swift-nio")]
        ),
        .target(
            name: "ChatCore",
            dependencies: [
                "SocketIO",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Metrics", package: "swift-metrics"),
            ]
        ),
        .target(
            name: "MeshFanout",
            dependencies: [
                "ChatCore", "ClusterConfig",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                "CLibCrypto",
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
            ]
        ),
        .target(
            name: "RedisFanout",
            dependencies: [
                "ChatCore", "ClusterConfig", "SocketIO",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
            ]
        ),
        .target(
            name: "ChatServer",
            dependencies: [
                "EngineIO", "SocketIO", "ChatCore", "ClusterConfig", "MeshFanout", "RedisFanout", "CSystemd",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                "CLibCrypto",
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOTLS", package: "swift-nio"),
            ],
            // The chat page, compiled into the binary as bytes (PackageResources.*), so the node
            // stays one self-contained file while the page stays real HTML/JS/CSS for editors and tests.
            resources: [
                .embedInCode("Web/index.html"),
                .embedInCode("Web/chatmesh.js"),
                .embedInCode("Web/chatmesh.css"),
            ]
        ),
        .target(
            name: "ClusterSecurity",
            dependencies: ["ClusterConfig", "CLibCrypto"]
        ),
        .target(
            name: "ClusterSupervisor",
            dependencies: [
                "ClusterConfig", "SocketIO",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "ChatBench",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ]
        ),
        .executableTarget(
            name: "chatmesh",
            dependencies: [
                "ChatServer", "ClusterConfig", "ClusterSecurity", "ClusterSupervisor", "ChatBench", "RedisFanout",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(name: "EngineIOTests", dependencies: ["EngineIO"]),
        .testTarget(
            name: "ChatServerTests",
            dependencies: [
                "ChatServer",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
            ]
        ),
        .testTarget(name: "ChatBenchTests", dependencies: ["ChatBench"]),
        .testTarget(name: "SocketIOTests", dependencies: ["SocketIO"]),
        .testTarget(
            name: "ClusterConfigTests",
            dependencies: ["ClusterConfig", .product(name: "NIOCore", package: "swift-nio")]
        ),
        .testTarget(
            name: "ClusterSecurityTests",
            dependencies: ["ClusterSecurity", "ClusterConfig", "CLibCrypto"]
        ),
        .testTarget(
            name: "ClusterSupervisorTests",
            dependencies: ["ClusterSupervisor", "ClusterConfig"]
        ),
        .testTarget(
            name: "RedisFanoutTests",
            dependencies: [
                "RedisFanout", "ChatCore", "ClusterConfig", "SocketIO",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOTLS", package: "swift-nio"),
            ]
        ),
        .testTarget(
            name: "MeshFanoutTests",
            dependencies: [
                "MeshFanout", "ChatCore", "ClusterConfig", "SocketIO",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ]
        ),
        .testTarget(
            name: "ChatCoreTests",
            dependencies: [
                "ChatCore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)

// MARK: - Sanitizers (begin) ---------------------------------------------------------------
// CHATMESH_SANITIZE=address or =thread (`make sanitize-address` / `make sanitize-thread`, both run
// by `make test`) builds OUR targets instrumented and links the sanitizer runtime into every
// product, while the dependencies (NIO, swift-log, ...) keep their uninstrumented objects in
// the same .build: switching recompiles our modules only, where `swift build --sanitize=` would
// rebuild every dependency too. SwiftPM keys its manifest cache on the environment, so a change
// of the variable takes effect at once (and flips our modules back on the next plain build).
// Sources/CSanitizerDefaults (uninstrumented C, linked into chatmesh only here) gives the
// runtimes their default options.
if let sanitizer = Context.environment["CHATMESH_SANITIZE"], !sanitizer.isEmpty {
    precondition(["address", "thread"].contains(sanitizer), "CHATMESH_SANITIZE is address or thread, not \(sanitizer)")
    for target in package.targets where target.type != .system {
        target.swiftSettings = (target.swiftSettings ?? []) + [.unsafeFlags(["-sanitize=\(sanitizer)"])]
        // lld: gold warns once per ASan runtime symbol it cannot export (~280 lines a link).
        target.linkerSettings = (target.linkerSettings ?? []) + [.unsafeFlags(["-sanitize=\(sanitizer)", "-use-ld=lld"])]
    }
    package.targets.append(.target(name: "CSanitizerDefaults", path: "Sources/CSanitizerDefaults"))
    package.targets.first { $0.name == "chatmesh" }?.dependencies.append("CSanitizerDefaults")
}
// MARK: - Sanitizers (end) -----------------------------------------------------------------

// MARK: - Fuzzing (begin) ------------------------------------------------------------------
// libFuzzer targets, one per decoder, in Fuzz/<Target>/. They exist only when CHATMESH_FUZZ
// is set, so a normal `swift build` / `swift test` never sees them; `make fuzz` (Fuzz/run.sh)
// sets it and builds them with sanitizer coverage and ASan into .build-fuzz. `make test` only
// type-checks them, against its own debug build (scripts/check-fuzz-targets.sh, which reads
// the CLibFuzzer/FuzzSupport layout below from the directories, not from here).
if Context.environment["CHATMESH_FUZZ"] != nil {
    let nio: [Target.Dependency] = [.product(name: "NIOCore", package: "swift-nio")]
    func fuzzTarget(_ name: String, _ dependencies: [Target.Dependency]) -> Target {
        .executableTarget(name: name, dependencies: ["FuzzSupport"] + dependencies, path: "Fuzz/\(name)")
    }
    package.targets += [
        .target(name: "CLibFuzzer", path: "Fuzz/CLibFuzzer"),
        // NIOCore for the stream decoders' shared drain loop (`decodeAll`, on ByteBuffer).
        .target(name: "FuzzSupport", dependencies: ["CLibFuzzer"] + nio, path: "Fuzz/FuzzSupport"),
        fuzzTarget("FuzzEnginePacket", ["EngineIO"]),
        fuzzTarget("FuzzPollingPayload", ["EngineIO"]),
        fuzzTarget("FuzzEngineRequest", ["EngineIO"]),
        fuzzTarget("FuzzSocketPacket", ["EngineIO", "SocketIO"]),
        fuzzTarget("FuzzJSON", ["SocketIO"]),
        fuzzTarget("FuzzMeshFrame", ["MeshFanout"] + nio),
        fuzzTarget("FuzzMeshHandshake", ["MeshFanout"] + nio),
        fuzzTarget("FuzzRESP", ["RedisFanout"] + nio),
        fuzzTarget("FuzzRedisTopology", ["RedisFanout", "ClusterConfig"] + nio),
        fuzzTarget("FuzzClusterConfig", ["ClusterConfig"]),
        fuzzTarget("FuzzWebSocketFrame", ["ChatServer"] + nio),
    ]
    // The WebSocket frame reader is internal to ChatServer: its target reaches it through
    // `@testable import`, so in this build (only) ChatServer is compiled with -enable-testing.
    for target in package.targets where target.name == "ChatServer" {
        target.swiftSettings = (target.swiftSettings ?? []) + [.unsafeFlags(["-enable-testing"])]
    }
}
// MARK: - Fuzzing (end) --------------------------------------------------------------------
