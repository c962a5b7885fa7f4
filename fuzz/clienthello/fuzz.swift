// libFuzzer entry point for the ClientHello parser: built by fuzz/run-clienthello.sh with the ProxyFingerprint
// sources compiled into this module (no `import`), under -sanitize=fuzzer,address.

/// Parses arbitrary bytes with framing auto-detection; on success computes every derived value and checks the
/// serialise/re-parse invariant, so a wrong length computation shows up as a crash rather than silently.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = UnsafeRawBufferPointer(start: data, count: size)
    // The explicit framings see the same bytes too: each has its own length bookkeeping.
    _ = try? ClientHello.parse(handshake: input)
    _ = try? ClientHello.parse(records: input)
    if let (_, consumed) = try? ClientHello.parsePrefix(records: input) {
        precondition(consumed > 0 && consumed <= size, "parsePrefix consumed out of range")
    }
    guard let hello = try? ClientHello.parse(bytes: input) else { return 0 }
    let ja3 = hello.ja3
    let ja4 = hello.ja4
    _ = hello.features
    precondition(ja4.fingerprint.utf8.count == 36 && ja3.md5.utf8.count == 32, "malformed fingerprint")
    do {
        let again = try ClientHello.parse(handshake: hello.serialize())
        precondition(again.ja4 == ja4 && again.ja3 == ja3, "serialize/parse round trip changed the fingerprint")
    } catch {
        preconditionFailure("serialized hello does not re-parse: \(error)")
    }
    return 0
}
