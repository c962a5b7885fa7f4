extension HTTPHeaders {
    /// An empty section to fill with `append(name:value:)`: fields that did not arrive as HTTP/1 text (HTTP/2
    /// request fields and trailers). Reuse it with `removeAllKeepingCapacity()`.
    public init(reservingBytes: Int) {
        self.init()
        bytes.reserveCapacity(reservingBytes)
        fields.reserveCapacity(16)
    }

    /// Clears for reuse, keeping capacity.
    public mutating func removeAllKeepingCapacity() { removeAll() }

    /// Appends one field. It is stored as the line `name: value\r\n`, so the HTTP/1 writers copy it in one piece.
    /// The caller has validated the bytes (no CR, LF or NUL; a token name); nothing is checked here.
    public mutating func append(name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) {
        let nameStart = UInt32(bytes.count)
        bytes.append(contentsOf: name)
        let nameEnd = UInt32(bytes.count)
        bytes.append(ASCII.colon)
        bytes.append(ASCII.sp)
        let valueStart = UInt32(bytes.count)
        bytes.append(contentsOf: value)
        let valueEnd = UInt32(bytes.count)
        bytes.append(ASCII.cr)
        bytes.append(ASCII.lf)
        fields.append(HeaderField(nameStart: nameStart, nameEnd: nameEnd, valueStart: valueStart, valueEnd: valueEnd))
    }

    /// Calls `body` with the name and value of each field that may be forwarded as a trailer (framing and
    /// hop-by-hop fields and Host dropped, as `HTTP1Writer.appendLastChunk` does).
    public func forEachForwardableTrailer(_ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) -> Void) {
        bytes.withUnsafeBufferPointer { buf in
            guard let p = buf.baseAddress else { return }
            for f in fields {
                let np = p + Int(f.nameStart)
                let nl = Int(f.nameEnd - f.nameStart)
                if HTTP1Writer.isHopByHopOrFraming(np, nl) || ASCII.equalsIgnoringCase(np, nl, "host") { continue }
                body(
                    UnsafeRawBufferPointer(start: np, count: nl),
                    UnsafeRawBufferPointer(start: p + Int(f.valueStart), count: Int(f.valueEnd - f.valueStart))
                )
            }
        }
    }
}

extension ResponseHead {
    /// Calls `body` with the name and value of each field forwarded to an HTTP/2 client: the origin's fields in
    /// order minus hop-by-hop fields (including those named in Connection) and framing fields. The caller adds
    /// `content-length` from `contentLength` where it applies (HTTP/2 has no other framing field).
    public func forEachForwardableField(_ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) -> Void) {
        let fields = headers.fields
        headers.bytes.withUnsafeBufferPointer { buf in
            guard let p = buf.baseAddress else { return }
            let checkConnection = HTTP1Writer.connectionNamesFields(p, fields)
            for f in fields {
                let np = p + Int(f.nameStart)
                let nl = Int(f.nameEnd - f.nameStart)
                if HTTP1Writer.isHopByHopOrFraming(np, nl) { continue }
                if checkConnection && HTTP1Writer.isNamedByConnection(p, fields, np, nl) { continue }
                body(
                    UnsafeRawBufferPointer(start: np, count: nl),
                    UnsafeRawBufferPointer(start: p + Int(f.valueStart), count: Int(f.valueEnd - f.valueStart))
                )
            }
        }
    }
}
