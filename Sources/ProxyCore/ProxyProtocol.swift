import Glibc

/// The PROXY protocol (HAProxy's spec, versions 1 and 2): the header an L4 load balancer (AWS NLB, a Kubernetes
/// Service, HAProxy in `mode tcp` with `send-proxy[-v2]`) puts in front of a TCP stream to name the client it
/// accepted. Sans-IO: bytes in, a verdict out; the listener peeks, parses, then consumes exactly `length` bytes so
/// the TLS ClientHello that follows is untouched.
///
/// Hand-written: the format is two small fixed layouts and no Swift library parses it; nginx and HAProxy carry
/// their own parsers too. Strict where the spec is (v1 single spaces and CRLF, v2 signature, version and lengths);
/// anything else is `.invalid` and the connection is closed.
public enum ProxyProtocol {
    /// The v2 signature: `\r\n\r\n\0\r\nQUIT\n`.
    public static let v2Signature: [UInt8] = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A]
    /// A v1 header is at most 107 bytes, CRLF included (the spec's bound).
    public static let v1MaxLength = 107
    /// The largest v2 header accepted: the 16-byte preamble plus addresses and TLVs (AWS NLB's VPC endpoint ID,
    /// HAProxy's SSL TLVs) fit easily; anything longer is refused rather than buffered.
    public static let v2MaxLength = 16 + 1024
    /// Bytes to peek so that any acceptable header is seen whole.
    public static let maxLength = v2MaxLength

    /// The client the load balancer accepted: its IP address (4 or 16 bytes) and port.
    public struct Source: Equatable, Sendable {
        public var address: [UInt8]
        public var port: UInt16
        public init(address: [UInt8], port: UInt16) {
            self.address = address
            self.port = port
        }

        /// The address as text (`192.0.2.1`, `2001:db8::1`).
        public var host: String {
            var out = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN) + 1)
            let family = address.count == 4 ? AF_INET : AF_INET6
            _ = address.withUnsafeBytes { inet_ntop(family, $0.baseAddress, &out, socklen_t(out.count)) }
            return String(decoding: out.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
    }

    public enum Result: Equatable, Sendable {
        /// Not enough bytes yet to decide.
        case needMore
        /// Not a valid PROXY header (or one too long): close the connection.
        case invalid(String)
        /// A complete header of `length` bytes. `source` is nil when the header names no client (v2 LOCAL, as
        /// load balancers' own health checks send; v1 UNKNOWN; a v2 family other than TCP/UDP over IPv4/IPv6):
        /// the socket's own peer address stands.
        case header(length: Int, version: Int, source: Source?)
    }

    /// Parses the start of a connection's bytes.
    public static func parse(_ bytes: UnsafeRawBufferPointer) -> Result {
        if bytes.isEmpty { return .needMore }
        if bytes[0] == UInt8(ascii: "P") { return parseV1(bytes) }
        if bytes[0] == 0x0D { return parseV2(bytes) }
        return .invalid("not a PROXY protocol header")
    }

    // MARK: version 1

    private static func parseV1(_ b: UnsafeRawBufferPointer) -> Result {
        let prefix = Array("PROXY ".utf8)
        for i in 0..<min(prefix.count, b.count) where b[i] != prefix[i] {
            return .invalid("not a PROXY protocol header")
        }
        // The line ends at the first CR, which must be followed by LF, within the bound.
        var cr = -1
        for i in 0..<min(b.count, v1MaxLength) where b[i] == 0x0D || b[i] == 0x0A {
            guard b[i] == 0x0D else { return .invalid("PROXY v1 header: LF without CR") }
            cr = i
            break
        }
        if cr < 0 {
            return b.count >= v1MaxLength ? .invalid("PROXY v1 header longer than 107 bytes") : .needMore
        }
        if cr + 1 >= b.count { return .needMore }
        guard b[cr + 1] == 0x0A else { return .invalid("PROXY v1 header: CR without LF") }
        let line = Array(b[prefix.count..<cr])
        let fields = line.split(separator: UInt8(ascii: " "), omittingEmptySubsequences: false)
        let length = cr + 2
        guard let proto = fields.first else { return .invalid("PROXY v1 header: no protocol") }
        if proto.elementsEqual("UNKNOWN".utf8) {
            // "the receiver must ignore anything presented before the CRLF"
            return .header(length: length, version: 1, source: nil)
        }
        let family: Int32
        if proto.elementsEqual("TCP4".utf8) {
            family = AF_INET
        } else if proto.elementsEqual("TCP6".utf8) {
            family = AF_INET6
        } else {
            return .invalid("PROXY v1 header: unknown protocol")
        }
        guard fields.count == 5 else { return .invalid("PROXY v1 header: expected 5 fields") }
        guard let src = parseAddress(fields[1], family: family), parseAddress(fields[2], family: family) != nil,
            let sport = parsePort(fields[3]), parsePort(fields[4]) != nil
        else { return .invalid("PROXY v1 header: bad address or port") }
        return .header(length: length, version: 1, source: Source(address: src, port: sport))
    }

    private static func parseAddress(_ text: ArraySlice<UInt8>, family: Int32) -> [UInt8]? {
        guard !text.isEmpty, text.count <= 45 else { return nil }
        var out = [UInt8](repeating: 0, count: family == AF_INET ? 4 : 16)
        let cstr = Array(text) + [0]
        let ok = cstr.withUnsafeBufferPointer { s in
            out.withUnsafeMutableBytes {
                inet_pton(family, UnsafeRawPointer(s.baseAddress!).assumingMemoryBound(to: CChar.self), $0.baseAddress)
            }
        }
        return ok == 1 ? out : nil
    }

    private static func parsePort(_ text: ArraySlice<UInt8>) -> UInt16? {
        guard !text.isEmpty, text.count <= 5 else { return nil }
        // No leading zeros (the spec's canonical form), except "0" itself.
        if text.count > 1 && text.first == UInt8(ascii: "0") { return nil }
        var v = 0
        for c in text {
            guard c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9") else { return nil }
            v = v * 10 + Int(c - UInt8(ascii: "0"))
        }
        return v <= 65535 ? UInt16(v) : nil
    }

    // MARK: version 2

    private static func parseV2(_ b: UnsafeRawBufferPointer) -> Result {
        for i in 0..<min(v2Signature.count, b.count) where b[i] != v2Signature[i] {
            return .invalid("not a PROXY protocol header")
        }
        if b.count < 16 { return .needMore }
        let verCmd = b[12]
        guard verCmd >> 4 == 2 else { return .invalid("PROXY v2 header: unsupported version") }
        let command = verCmd & 0x0F
        guard command <= 1 else { return .invalid("PROXY v2 header: unknown command") }
        let familyProto = b[13]
        let payload = Int(b[14]) << 8 | Int(b[15])
        let length = 16 + payload
        guard length <= v2MaxLength else { return .invalid("PROXY v2 header longer than \(v2MaxLength) bytes") }
        if b.count < length { return .needMore }
        if command == 0 { return .header(length: length, version: 2, source: nil) }  // LOCAL
        let family = familyProto >> 4
        let transport = familyProto & 0x0F
        guard transport <= 2 else { return .invalid("PROXY v2 header: unknown transport") }
        switch family {
        case 1:  // IPv4: src 4, dst 4, src port 2, dst port 2
            guard payload >= 12 else { return .invalid("PROXY v2 header: short IPv4 address block") }
            let src = Array(b[16..<20])
            let port = UInt16(b[24]) << 8 | UInt16(b[25])
            return .header(length: length, version: 2, source: Source(address: src, port: port))
        case 2:  // IPv6: src 16, dst 16, src port 2, dst port 2
            guard payload >= 36 else { return .invalid("PROXY v2 header: short IPv6 address block") }
            let src = Array(b[16..<32])
            let port = UInt16(b[48]) << 8 | UInt16(b[49])
            return .header(length: length, version: 2, source: Source(address: src, port: port))
        case 0, 3:  // UNSPEC, AF_UNIX: no usable client address
            return .header(length: length, version: 2, source: nil)
        default:
            return .invalid("PROXY v2 header: unknown address family")
        }
    }
}

/// An IPv4 or IPv6 network (`10.0.0.0/8`, `2001:db8::/32`, or one address), for "who may send X" lists.
public struct CIDRBlock: Equatable, Sendable, CustomStringConvertible {
    public let network: [UInt8]
    public let prefix: Int

    /// Parses `a.b.c.d[/n]` or `ipv6[/n]`; nil when malformed (host bits set are allowed and ignored).
    public init?(_ text: String) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 1 || parts.count == 2 else { return nil }
        let host = String(parts[0])
        let family = host.contains(":") ? AF_INET6 : AF_INET
        var bytes = [UInt8](repeating: 0, count: family == AF_INET ? 4 : 16)
        guard bytes.withUnsafeMutableBytes({ inet_pton(family, host, $0.baseAddress) }) == 1 else { return nil }
        let maxPrefix = bytes.count * 8
        var p = maxPrefix
        if parts.count == 2 {
            guard let n = Int(parts[1]), n >= 0, n <= maxPrefix, !parts[1].hasPrefix("+") else { return nil }
            p = n
        }
        for i in 0..<bytes.count {
            let keep = max(0, min(8, p - i * 8))
            bytes[i] &= keep == 0 ? 0 : UInt8(truncatingIfNeeded: 0xFF << (8 - keep))
        }
        network = bytes
        prefix = p
    }

    /// Whether `address` (4 or 16 bytes; an IPv4-mapped IPv6 address counts as IPv4) is in the block.
    public func contains(_ address: [UInt8]) -> Bool {
        var a = address
        if a.count == 16 && network.count == 4 && a[0..<10].allSatisfy({ $0 == 0 }) && a[10] == 0xFF && a[11] == 0xFF {
            a = Array(a[12..<16])
        }
        guard a.count == network.count else { return false }
        for i in 0..<a.count {
            let keep = max(0, min(8, prefix - i * 8))
            if keep == 0 { break }
            let mask = UInt8(truncatingIfNeeded: 0xFF << (8 - keep))
            if a[i] & mask != network[i] { return false }
        }
        return true
    }

    public var description: String {
        var out = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN) + 1)
        _ = network.withUnsafeBytes {
            inet_ntop(network.count == 4 ? AF_INET : AF_INET6, $0.baseAddress, &out, socklen_t(out.count))
        }
        return "\(String(decoding: out.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))/\(prefix)"
    }
}
