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
            var buf = [CChar](repeating: 0, count: 256)
            ERR_error_string_n(code, &buf, buf.count)
            parts.append(String(cString: buf))
        }
        message = parts.isEmpty ? what : "\(what): \(parts.joined(separator: "; "))"
    }
    public var description: String { message }
}
