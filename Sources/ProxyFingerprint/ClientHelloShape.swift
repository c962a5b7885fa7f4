/// The part of a ClientHello that everything EdgeProxy derives from it depends on: parse success, the feature set,
/// JA3 and JA4 (and so every policy decision and the detector's key). Two hellos with the same shape give the same
/// answers, so a handshake whose shape was seen before can reuse them without parsing again (`ShapeCache`).
///
/// What the shape leaves out is what changes from one connection of the same client to the next and that nothing
/// reads: the random, the session ID's bytes (its length stays), the key_share key bytes (the groups stay), the
/// session_ticket, pre_shared_key and padding bodies (so a TLS 1.2 ticket resumption has the shape of the visit that
/// got the ticket), and which GREASE value (RFC 8701) sits where (all become 0x0a0a; where GREASE is stays).
/// Everything else goes in as sent.
///
/// Hand-written like the parser it mirrors (`ClientHello+Parse.swift`): it must check exactly what the parser
/// checks in the parts it leaves out or rewrites (framing, the key_share and u16-list structure, duplicate
/// extension types, the size limit). Where it cannot, it gives no shape and the caller parses in full. That
/// equivalence is what `ClientHelloShapeTests` checks, over every fixture and thousands of mutations of them.
public enum ClientHelloShape {
    /// Longest shape written (real hellos give 100–600 bytes). A longer one gives no shape: parsed in full.
    public static let maxLength = 2048
    /// What every GREASE value becomes.
    static let grease: UInt16 = 0x0a0a

    /// Whether any of the four 16-bit values in `w` is GREASE (two equal bytes of the form 0x?A, so byte order
    /// does not matter). Exact: a lane of `d` is zero iff its value is GREASE.
    @inline(__always)
    static func mayHoldGREASE(_ w: UInt64) -> Bool {
        let lowNibbles = (w & 0x0F0F_0F0F_0F0F_0F0F) ^ 0x0A0A_0A0A_0A0A_0A0A
        let bytesDiffer = (w ^ (w >> 8)) & 0x00FF_00FF_00FF_00FF
        let d = lowNibbles | bytesDiffer
        // A 16-bit lane of d is zero iff adding 0x7FFF to its low 15 bits leaves its top bit and its own top
        // bit clear (no carry crosses lanes: at most 0x7FFF + 0x7FFF).
        let low15: UInt64 = 0x7FFF_7FFF_7FFF_7FFF
        let nonZero = ((d & low15) &+ low15) | d
        return ~nonZero & 0x8000_8000_8000_8000 != 0
    }

    /// Writes the shape of a bare handshake message (what `ClientHello.parse(handshake:)` takes) into `out` and
    /// returns its length, or nil when the message has no shape that stands for it (malformed, duplicate
    /// extension types, too many extensions, longer than `out` or `maxLength`). No allocation.
    public static func write(handshake buf: UnsafeRawBufferPointer, into out: UnsafeMutableRawBufferPointer) -> Int? {
        var w = Writer(out: out, limit: min(out.count, maxLength))
        do {
            try shape(buf, &w)
        } catch {
            // Which check failed does not matter here: the full parse finds and reports it.
            return nil
        }
        return w.count
    }

    /// The shape as an array (tests and tools; the live path uses `write` into a reused buffer).
    public static func of(handshake: [UInt8]) -> [UInt8]? {
        withUnsafeTemporaryAllocation(byteCount: maxLength, alignment: 1) { scratch -> [UInt8]? in
            let n = handshake.withUnsafeBytes { write(handshake: $0, into: scratch) }
            return n.map { Array(UnsafeRawBufferPointer(rebasing: scratch[0..<$0])) }
        }
    }

    /// A shape longer than the buffer or `maxLength` (reported like any other failure: as "no shape").
    static let full = ClientHelloParseError.oversized(what: .handshake, length: maxLength + 1, limit: maxLength)

    private struct Writer {
        let out: UnsafeMutableRawBufferPointer
        let limit: Int
        var count = 0

        @inline(__always)
        mutating func u8(_ v: UInt8) throws(ClientHelloParseError) {
            guard count < limit else { throw full }
            out[count] = v
            count += 1
        }

        @inline(__always)
        mutating func u16(_ v: UInt16) throws(ClientHelloParseError) {
            guard limit - count >= 2 else { throw full }
            out[count] = UInt8(v >> 8)
            out[count + 1] = UInt8(v & 0xff)
            count += 2
        }

        /// `v`, a GREASE value written as `grease`.
        @inline(__always)
        mutating func u16Normalized(_ v: UInt16) throws(ClientHelloParseError) {
            try u16(ClientHello.isGREASE(v) ? grease : v)
        }

        /// The reader's remaining bytes, as they are.
        mutating func bytes(_ r: ByteReader) throws(ClientHelloParseError) {
            let n = r.remaining
            guard limit - count >= n else { throw full }
            if n > 0 {
                // SAFETY: the destination range was checked above; the reader's range lies inside its buffer.
                (out.baseAddress! + count).copyMemory(from: r.base.baseAddress! + r.pos, byteCount: n)
            }
            count += n
        }

        /// A u16 list (the reader's remaining bytes): its count, then the values with GREASE replaced. An odd
        /// length is malformed, as for the parser's `u16List`.
        mutating func u16List(_ r: ByteReader) throws(ClientHelloParseError) {
            guard r.remaining & 1 == 0 else { throw .badVectorLength(what: .extensionBody, offset: r.pos, length: 0) }
            try u16(UInt16(r.remaining / 2))
            let start = count
            try bytes(r)
            // In place over the copy ([start, count) of `out`): four values at a time while none is GREASE (a
            // list holds at most one or two), then one by one through the word that has one.
            let o = out.baseAddress!
            var i = start
            while i &+ 8 <= count {
                if !ClientHelloShape.mayHoldGREASE(UnsafeRawPointer(o + i).loadUnaligned(as: UInt64.self)) {
                    i &+= 8
                    continue
                }
                for k in stride(from: i, to: i &+ 8, by: 2) { Self.normalize(o, k) }
                i &+= 8
            }
            while i < count {
                Self.normalize(o, i)
                i &+= 2
            }
        }

        @inline(__always)
        private static func normalize(_ o: UnsafeMutableRawPointer, _ i: Int) {
            let v =
                UInt16(o.load(fromByteOffset: i, as: UInt8.self)) << 8
                | UInt16(o.load(fromByteOffset: i + 1, as: UInt8.self))
            if ClientHello.isGREASE(v) {
                o.storeBytes(of: UInt8(grease >> 8), toByteOffset: i, as: UInt8.self)
                o.storeBytes(of: UInt8(grease & 0xff), toByteOffset: i + 1, as: UInt8.self)
            }
        }

    }

    private static func shape(_ buf: UnsafeRawBufferPointer, _ w: inout Writer) throws(ClientHelloParseError) {
        // Framing, as `parseMessage` checks it: one ClientHello message, exactly the input, within the size limit.
        guard buf.count >= 4, try ClientHello.messageTotal(buf[0], buf[1], buf[2], buf[3]) == buf.count else {
            throw .empty
        }
        var r = ByteReader(buf, from: 4, to: buf.count)
        try w.u16(try r.u16(.legacyVersion))
        try r.skip(32, .random)
        let sessionID = try r.vector(lengthBytes: 1, .sessionID)
        guard sessionID.remaining <= 32 else { throw .empty }
        try w.u8(UInt8(sessionID.remaining))
        try w.u16List(try r.vector(lengthBytes: 2, .cipherSuites))
        let compression = try r.vector(lengthBytes: 1, .compressionMethods)
        try w.u8(UInt8(compression.remaining))
        try w.bytes(compression)
        if r.isAtEnd {
            try w.u8(0)  // no extensions block (SSLv3/TLS 1.0 style)
            return
        }
        var block = try r.exactVector(lengthBytes: 2, .extensions)
        try w.u8(1)
        try extensions(&block, &w)
    }

    /// The extensions in wire order: the type (GREASE replaced), then what the parser reads of the body.
    private static func extensions(_ block: inout ByteReader, _ w: inout Writer) throws(ClientHelloParseError) {
        // Raw types seen so far, for the duplicate check. The parser compares raw values, so two GREASE
        // extensions of different values pass and two of the same value do not: this must see raw values too.
        // Room for 48 (real hellos have < 25); more give no shape.
        // Types below 64 (most of them) are tracked in a bit set; the rest in the list, so the duplicate check
        // does not compare every extension with every earlier one.
        var seen: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) =
            (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        var seenLow: UInt64 = 0
        var extensionCount = 0
        try withUnsafeMutableBytes(of: &seen) { raw throws(ClientHelloParseError) in
            let types = raw.bindMemory(to: UInt16.self)
            var n = 0
            while !block.isAtEnd {
                let type = try block.u16(.extensionHeader)
                var body = try block.vector(lengthBytes: 2, .extensionBody)
                guard extensionCount < types.count else { throw full }
                extensionCount += 1
                if type < 64 {
                    let bit: UInt64 = 1 << UInt64(type)
                    if seenLow & bit != 0 { throw .duplicateExtension(type: type, offset: block.pos) }
                    seenLow |= bit
                } else {
                    for i in 0..<n where types[i] == type { throw .duplicateExtension(type: type, offset: block.pos) }
                    types[n] = type
                    n += 1
                }
                try w.u16Normalized(type)
                switch type {
                case 10, 13:  // supported_groups, signature_algorithms: a 2-byte-length list of u16
                    try w.u16List(try body.exactVector(lengthBytes: 2, .extensionBody))
                case 43:  // supported_versions: a 1-byte-length list of u16
                    try w.u16List(try body.exactVector(lengthBytes: 1, .extensionBody))
                case 51:  // key_share: (group, key_exchange) entries; the groups stay, the keys go
                    var list = try body.exactVector(lengthBytes: 2, .keyShare)
                    let countAt = w.count
                    try w.u16(0)  // the number of groups, filled in below (every part of a shape is counted)
                    var groups: UInt16 = 0
                    while !list.isAtEnd {
                        try w.u16Normalized(try list.u16(.keyShare))
                        _ = try list.vector(lengthBytes: 2, .keyShare)
                        groups &+= 1
                    }
                    w.out[countAt] = UInt8(groups >> 8)
                    w.out[countAt + 1] = UInt8(groups & 0xff)
                case 21, 35, 41:  // padding, session_ticket, pre_shared_key: opaque to the parser, and different
                    // on every connection (a resumption presents a ticket where the first visit sent none)
                    break
                default:  // as sent (the parser's checks of these bodies depend on their bytes only)
                    try w.u16(UInt16(body.remaining))
                    try w.bytes(body)
                }
            }
        }
    }
}
