// swift-tools-version:6.0
// EdgeProxy: a TLS-terminating reverse proxy on OpenSSL 3 and its own epoll loop.
// Layout (see docs/STYLE.md): C modules at the bottom, one target per concern,
// protocol code (fingerprint, policy, tickets, HTTP/1) sans-IO and testable with bytes in/values out.
import PackageDescription

// The data path is single-threaded per connection and never overlaps accesses, so release builds of the hot-path
// modules skip Swift's dynamic exclusivity checks (they showed up at ~1.5% of proxy CPU in perf).
// Cross-module optimization: the request path crosses modules (ProxyServer → ProxyForwarder, ProxyUpstreams,
// ProxyHTTP1/2, ProxyCore); without it generic types of one module used by another (the idle-connection pool, the
// buffer helpers) are not specialized, and perf showed the runtime instantiating generic metadata and looking up
// witness tables (behind a lock) on every pooled origin connection.
let hotPath: [SwiftSetting] = [
    .unsafeFlags(["-enforce-exclusivity=unchecked", "-cross-module-optimization"], .when(configuration: .release))
]

let package = Package(
    name: "EdgeProxy",
    products: [
        .executable(name: "edgeproxy", targets: ["edgeproxy"]),
        .executable(name: "edgeproxy-bench", targets: ["EdgeProxyBench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser.git", exact: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", exact: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics.git", exact: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", exact: "2.4.1"),
        .package(url: "https://github.com/LebJe/TOMLKit.git", exact: "0.6.0"),
    ],
    targets: [
        // OpenSSL 3 from Debian's libssl-dev.
        .systemLibrary(name: "COpenSSL", pkgConfig: "openssl", providers: [.apt(["libssl-dev"])]),
        // One-line forwarders for what Swift cannot import (function-like macros, epoll/accept4 headers).
        .target(name: "CProxyShims", dependencies: ["COpenSSL"]),
        // hiredis 0.14 from Debian's libhiredis-dev; imported privately by ProxyTicketStore only.
        // No pkgConfig: hiredis.pc adds -D_FILE_OFFSET_BITS=64, which SwiftPM refuses with a warning on every build (a
        // no-op on 64-bit Linux anyway); the header is <hiredis/hiredis.h> on the default path, the modulemap links it.
        .systemLibrary(name: "CHiredis", providers: [.apt(["libhiredis-dev"])]),
        // nghttp2 from Debian's libnghttp2-dev; imported (privately) by ProxyHTTP2 only.
        .systemLibrary(name: "CNGHTTP2", pkgConfig: "libnghttp2", providers: [.apt(["libnghttp2-dev"])]),

        .target(name: "ProxyCore", swiftSettings: hotPath),
        // Source positions of keys and values in TOML text (TOMLKit has none); shared by ProxyConfig and ProxyPolicy.
        .target(name: "ProxyTOMLSupport"),
        .target(name: "ProxyEventLoop", dependencies: ["ProxyCore", "CProxyShims"], swiftSettings: hotPath),
        .target(name: "ProxyFingerprint", dependencies: ["ProxyCore", "COpenSSL"], swiftSettings: hotPath),
        .target(
            name: "ProxyPolicy",
            dependencies: [
                "ProxyCore", "ProxyFingerprint", "ProxyTOMLSupport", .product(name: "TOMLKit", package: "TOMLKit"),
            ]
        ),
        .target(name: "ProxyTickets", dependencies: ["ProxyCore", "COpenSSL"]),
        // The renewal-intolerance detector (issue #14): observations in, flags out; no I/O, no OpenSSL.
        // Single-threaded per instance (a worker's cache, the control thread's table): no exclusivity checks either.
        .target(name: "ProxyDetector", dependencies: ["ProxyCore"], swiftSettings: hotPath),
        // Redis I/O for fleet-wide ticket keys (the only hiredis user); ProxyTickets stays sans-IO.
        .target(name: "ProxyTicketStore", dependencies: ["ProxyCore", "ProxyEventLoop", "ProxyTickets", "CHiredis"]),
        .target(name: "ProxyHTTP1", dependencies: ["ProxyCore"], swiftSettings: hotPath),
        // Sans-IO HTTP/2 server session on nghttp2; shares the header container type with ProxyHTTP1.
        .target(name: "ProxyHTTP2", dependencies: ["ProxyCore", "ProxyHTTP1", "CNGHTTP2"], swiftSettings: hotPath),
        // The one origin forwarder (connect, request bytes, response parsing, retries, timeouts), shared by the
        // HTTP/1 and HTTP/2 sessions; sans-IO toward sockets (OriginTransport), so it is unit-tested without any.
        .target(name: "ProxyForwarder", dependencies: ["ProxyCore", "ProxyHTTP1"], swiftSettings: hotPath),
        .target(
            name: "ProxyConfig",
            dependencies: [
                "ProxyCore", "ProxyTickets", "ProxyTOMLSupport", .product(name: "TOMLKit", package: "TOMLKit"),
            ]
        ),
        // Pools, routes, balancing, re-resolution and health of origins; workers read it through lock-free snapshots.
        .target(
            name: "ProxyUpstreams",
            dependencies: [
                "ProxyCore", "ProxyConfig", "ProxyEventLoop",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
            ],
            swiftSettings: hotPath
        ),
        .target(
            name: "ProxyTLS",
            dependencies: ["ProxyCore", "CProxyShims", "COpenSSL", "ProxyTickets"],
            swiftSettings: hotPath
        ),
        .target(
            name: "ProxyServer",
            dependencies: [
                "ProxyCore", "ProxyEventLoop", "ProxyTLS", "ProxyHTTP1", "ProxyHTTP2", "ProxyForwarder", "ProxyTickets",
                "ProxyFingerprint",
                "ProxyPolicy", "ProxyConfig", "CProxyShims", "ProxyTicketStore", "ProxyUpstreams", "ProxyDetector",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: hotPath
        ),
        .executableTarget(
            name: "edgeproxy",
            dependencies: [
                "ProxyServer", "ProxyConfig", "ProxyPolicy", "ProxyFingerprint", "ProxyTickets", "ProxyTicketStore",
                "ProxyHTTP1",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Load generator (bench/): OpenSSL on the client side, on our own event loop.
        .executableTarget(
            name: "EdgeProxyBench",
            dependencies: [
                "ProxyCore", "ProxyEventLoop", "CProxyShims", "COpenSSL",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),

        // Helpers shared by the unit-test targets (a seeded generator), which cannot see each other's code.
        .target(name: "EdgeProxyTestSupport", path: "Tests/EdgeProxyTestSupport"),
        .testTarget(name: "ProxyCoreTests", dependencies: ["ProxyCore"]),
        .testTarget(name: "ProxyTOMLSupportTests", dependencies: ["ProxyTOMLSupport"]),
        .testTarget(name: "ProxyEventLoopTests", dependencies: ["ProxyEventLoop", "ProxyCore"]),
        .testTarget(name: "ProxyFingerprintTests", dependencies: ["ProxyFingerprint", "EdgeProxyTestSupport"]),
        .testTarget(
            name: "ProxyPolicyTests",
            dependencies: ["ProxyPolicy", "ProxyFingerprint", "EdgeProxyTestSupport"]
        ),
        .testTarget(name: "ProxyTicketsTests", dependencies: ["ProxyTickets", "ProxyCore"]),
        .testTarget(name: "ProxyDetectorTests", dependencies: ["ProxyDetector", "ProxyCore", "EdgeProxyTestSupport"]),
        .testTarget(name: "ProxyHTTP1Tests", dependencies: ["ProxyHTTP1", "EdgeProxyTestSupport"]),
        // Drives the server session with a real nghttp2 client session (bytes in, events out).
        .testTarget(name: "ProxyHTTP2Tests", dependencies: ["ProxyHTTP2", "ProxyHTTP1", "CNGHTTP2"]),
        .testTarget(name: "ProxyConfigTests", dependencies: ["ProxyConfig"]),
        .testTarget(name: "ProxyForwarderTests", dependencies: ["ProxyForwarder", "ProxyHTTP1", "ProxyCore"]),
        // The session cache without sockets (LRU, TTL, bounds, wipe).
        // Also the pure decisions of the TLS layer (the OpenSSL callbacks only map them, e.g. ALPNSelection).
        .testTarget(name: "ProxyTLSTests", dependencies: ["ProxyTLS", "COpenSSL", "CProxyShims"]),
        .testTarget(
            name: "ProxyUpstreamsTests",
            dependencies: ["ProxyUpstreams", "ProxyConfig", "ProxyEventLoop", "ProxyCore"]
        ),
    ]
)
