/// Byte-level JSON building for log lines and small API responses (no Foundation on the hot path).
struct JSONWriter {
    var bytes: [UInt8]
    private var needsComma = false

    init(reserving n: Int = 512) {
        bytes = []
        bytes.reserveCapacity(n)
    }

    /// Appends to an existing buffer (pass it uniquely referenced to avoid a copy; take it back from `bytes`).
    init(appendingTo existing: [UInt8]) {
        bytes = existing
    }

    /// A field whose value is a NUL-terminated C string (nil → null), without creating a Swift String.
    mutating func field(_ k: StaticString, cString v: UnsafePointer<CChar>?) {
        key(k)
        if let v {
            var n = 0
            while v[n] != 0 { n += 1 }
            v.withMemoryRebound(to: UInt8.self, capacity: n) { appendQuoted(UnsafeBufferPointer(start: $0, count: n)) }
        } else {
            bytes.append(contentsOf: [110, 117, 108, 108])  // null
        }
        needsComma = true
    }

    mutating func beginObject() {
        comma()
        bytes.append(UInt8(ascii: "{"))
        needsComma = false
    }

    mutating func endObject() {
        bytes.append(UInt8(ascii: "}"))
        needsComma = true
    }

    mutating func beginArray(_ key: StaticString) {
        self.key(key)
        bytes.append(UInt8(ascii: "["))
        needsComma = false
    }

    mutating func beginObject(_ key: StaticString) {
        self.key(key)
        bytes.append(UInt8(ascii: "{"))
        needsComma = false
    }

    mutating func endArray() {
        bytes.append(UInt8(ascii: "]"))
        needsComma = true
    }

    private mutating func comma() {
        if needsComma { bytes.append(UInt8(ascii: ",")) }
    }

    mutating func key(_ k: StaticString) {
        comma()
        bytes.append(UInt8(ascii: "\""))
        bytes.append(contentsOf: UnsafeBufferPointer(start: k.utf8Start, count: k.utf8CodeUnitCount))
        bytes.append(contentsOf: [UInt8(ascii: "\""), UInt8(ascii: ":")])
        needsComma = false
    }

    mutating func key(_ k: String) {
        comma()
        appendQuoted(k.utf8)
        bytes.append(UInt8(ascii: ":"))
        needsComma = false
    }

    mutating func field(_ k: StaticString, _ v: String?) {
        key(k)
        if let v { appendQuoted(v.utf8) } else { bytes.append(contentsOf: Array("null".utf8)) }
        needsComma = true
    }

    mutating func field(_ k: StaticString, bytes v: some Collection<UInt8>) {
        key(k)
        appendQuoted(v)
        needsComma = true
    }

    mutating func field(_ k: StaticString, static v: StaticString) {
        key(k)
        appendQuoted(UnsafeBufferPointer(start: v.utf8Start, count: v.utf8CodeUnitCount))
        needsComma = true
    }

    mutating func field(_ k: StaticString, _ v: Int) {
        key(k)
        appendInt(v)
        needsComma = true
    }

    mutating func field(_ k: StaticString, _ v: Bool) {
        key(k)
        bytes.append(contentsOf: v ? Array("true".utf8) : Array("false".utf8))
        needsComma = true
    }

    /// Milliseconds with three decimals, from nanoseconds.
    mutating func field(_ k: StaticString, millisFromNanos ns: UInt64) {
        key(k)
        let us = Int(ns / 1000)
        appendInt(us / 1000)
        bytes.append(UInt8(ascii: "."))
        let frac = us % 1000
        if frac < 100 { bytes.append(UInt8(ascii: "0")) }
        if frac < 10 { bytes.append(UInt8(ascii: "0")) }
        appendInt(frac)
        needsComma = true
    }

    /// After writing a value's bytes directly into `bytes`.
    mutating func markValueWritten() { needsComma = true }

    mutating func element(_ v: String) {
        comma()
        appendQuoted(v.utf8)
        needsComma = true
    }

    mutating func raw(_ k: StaticString, json: [UInt8]) {
        key(k)
        bytes.append(contentsOf: json)
        needsComma = true
    }

    mutating func appendInt(_ v: Int) {
        if v < 0 {
            bytes.append(UInt8(ascii: "-"))
            appendInt(-v)
            return
        }
        if v >= 10 { appendInt(v / 10) }
        bytes.append(UInt8(ascii: "0") + UInt8(v % 10))
    }

    /// Quotes and escapes; bytes that are not printable ASCII are written as \u00XX so any input stays valid JSON.
    mutating func appendQuoted(_ s: some Collection<UInt8>) {
        bytes.append(UInt8(ascii: "\""))
        for b in s {
            switch b {
            case UInt8(ascii: "\""): bytes.append(contentsOf: [92, 34])
            case UInt8(ascii: "\\"): bytes.append(contentsOf: [92, 92])
            case 0x20..<0x7f: bytes.append(b)
            default:
                let hex: [UInt8] = Array("0123456789abcdef".utf8)
                bytes.append(contentsOf: [92, UInt8(ascii: "u"), 48, 48, hex[Int(b >> 4)], hex[Int(b & 15)]])
            }
        }
        bytes.append(UInt8(ascii: "\""))
    }
}
