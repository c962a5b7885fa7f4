// libFuzzer target for the PROXY protocol parser (ProxyCore/ProxyProtocol.swift), compiled together with ProxyCore's
// sources by fuzz/run-proxyprotocol.sh. For every input it checks:
// - nothing traps (ASan + Swift runtime checks);
// - a complete header is never longer than the input nor than the bound, and its source is 4 or 16 bytes;
// - the verdict on every prefix is consistent: a prefix shorter than an accepted header is "need more", and
//   bytes after a complete header never change it (the TLS record that follows must not matter);
// - CIDR parsing of the input as text never traps, and a parsed block contains its own network address.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = UnsafeRawBufferPointer(start: data, count: size)
    let whole = ProxyProtocol.parse(bytes)
    if case .header(let length, let version, let source) = whole {
        precondition(length <= size && length <= ProxyProtocol.maxLength && length >= 15)
        precondition(version == 1 || version == 2)
        if let s = source { precondition(s.address.count == 4 || s.address.count == 16) }
        // Every shorter prefix needs more (or, for v1, cannot yet be judged invalid by a later byte).
        for cut in stride(from: 0, to: length, by: max(1, length / 16)) {
            let r = ProxyProtocol.parse(UnsafeRawBufferPointer(rebasing: bytes[..<cut]))
            precondition(r == .needMore, "prefix \(cut) of an accepted header: \(r)")
        }
        // Only the header's own bytes decide.
        let exact = ProxyProtocol.parse(UnsafeRawBufferPointer(rebasing: bytes[..<length]))
        precondition(exact == whole, "\(exact) != \(whole)")
    }
    if size <= 64, let text = String(validating: bytes, as: UTF8.self), let block = CIDRBlock(text) {
        precondition(block.contains(block.network))
        _ = block.description
    }
    return 0
}
