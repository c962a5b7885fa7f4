internal import COpenSSL

/// An OpenSSL failure with the drained error queue as text (never contains key material: OpenSSL's error
/// strings name functions and reasons only).
public struct TLSError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public init(_ what: String) {
        var parts: [String] = []
        while true {
            let code = ERR_get_error()
            if code == 0 { break }
            var buf = [UInt8](repeating: 0, count: 256)
            buf.withUnsafeMutableBufferPointer { p in
                p.baseAddress!.withMemoryRebound(to: CChar.self, capacity: p.count) {
                    ERR_error_string_n(code, $0, p.count)
                }
            }
            parts.append(String(decoding: buf.prefix { $0 != 0 }, as: UTF8.self))
        }
        message = parts.isEmpty ? what : "\(what): \(parts.joined(separator: "; "))"
    }
    public var description: String { message }
}
