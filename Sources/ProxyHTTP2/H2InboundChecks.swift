// The RFC 9113 checks nghttp2 1.52 cannot make in the configuration this proxy runs it in (RFC 7540 priorities off,
// SETTINGS_NO_RFC7540_PRIORITIES=1). Hand-written because no option or callback of nghttp2 gives the information:
//
// - Closed streams: nghttp2 destroys a stream as soon as it closes whenever NO_RFC7540_PRIORITIES=1 was sent
//   (`nghttp2_session_close_stream`); `nghttp2_option_set_no_closed_streams(0)` only retains streams that sit in the
//   RFC 7540 priority tree. For a stream it no longer has, it ignores HEADERS and drops DATA without any callback
//   (not even `on_begin_frame`), so DATA/HEADERS after the client's RST_STREAM or END_STREAM go unanswered
//   (h2spec http2/5.1/8, 9, 11, 12), and HEADERS on a lower, never-used stream ID are ignored (5.1.1/2).
// - PRIORITY frames: with RFC 7540 priorities off nghttp2 skips their payload unparsed and calls neither
//   `on_frame_recv` nor an extension callback (types <= 9 cannot be user extensions), so stream 0 (6.3/1) and
//   self-dependency (5.3.1/2) pass unnoticed, and a PRIORITY flood escapes the control-frame limiter.
//
// So the session watches frame headers on the way in (`H2FrameTap`: headers only, payloads are skipped by length;
// nghttp2 stays the one parser that acts on frames) and remembers how the client left its recent streams
// (`H2StreamHistory`). Everything nghttp2 does answer is left to it.

/// A frame header as it arrives, before nghttp2 processes the frame.
struct H2FrameHead: Equatable {
    var length: Int
    var type: UInt8
    var flags: UInt8
    var stream: Int32
    /// PRIORITY frames of the correct length (5): the stream they depend on. Otherwise -1.
    var dependency: Int32 = -1

    static let data: UInt8 = 0x0
    static let headers: UInt8 = 0x1
    static let priority: UInt8 = 0x2
    static let rstStream: UInt8 = 0x3
    static let endStream: UInt8 = 0x1

    /// DATA or HEADERS with END_STREAM, or RST_STREAM: a frame after which the client may send nothing more on
    /// the stream.
    var endsClientSide: Bool {
        type == Self.rstStream || ((type == Self.data || type == Self.headers) && flags & Self.endStream != 0)
    }
}

/// Finds frame boundaries in the client's byte stream, across reads of any size, without copying: skips the
/// 24-byte connection preface, reads each 9-byte header (plus the 5 payload bytes of a PRIORITY frame) and skips
/// the rest of the payload by its length.
struct H2FrameTap {
    private var prefaceLeft = 24
    private var skip = 0
    /// Header bytes of the current frame seen so far (9, or 14 for PRIORITY).
    private var have = 0
    private var length = 0
    private var type: UInt8 = 0
    private var flags: UInt8 = 0
    private var stream: UInt32 = 0
    private var dependency: UInt32 = 0

    init() {}

    /// Scans `bytes` from `start` to the end of the next frame header. Returns the index after it and the header
    /// with the index where it began in `bytes` (`start` when it began in an earlier buffer); `head` is nil when
    /// the buffer ended first (scanning then resumes with the next buffer).
    mutating func next(
        _ bytes: UnsafeRawBufferPointer,
        from start: Int
    ) -> (end: Int, head: H2FrameHead?, headStart: Int) {
        var i = start
        if prefaceLeft > 0 {
            let n = min(prefaceLeft, bytes.count - i)
            prefaceLeft -= n
            i += n
        }
        var headStart = start
        while i < bytes.count {
            if skip > 0 {
                let n = min(skip, bytes.count - i)
                skip -= n
                i += n
                continue
            }
            if have == 0 {
                headStart = i
                // Fast path: a whole 9-byte header in this buffer (nearly always), read at once rather than a
                // byte per state-machine step (each step wrote this struct back into the session: perf).
                if i + 9 <= bytes.count {
                    let p = (bytes.baseAddress! + i).assumingMemoryBound(to: UInt8.self)
                    let len: Int = Int(p[0]) << 16 | Int(p[1]) << 8 | Int(p[2])
                    let t: UInt8 = p[3]
                    if !(t == H2FrameHead.priority && len == 5) {
                        let hi: UInt32 = UInt32(p[5]) << 24 | UInt32(p[6]) << 16
                        let sid: UInt32 = hi | UInt32(p[7]) << 8 | UInt32(p[8])
                        skip = len
                        return (
                            i + 9,
                            H2FrameHead(
                                length: len,
                                type: t,
                                flags: p[4],
                                stream: Int32(bitPattern: sid & 0x7FFF_FFFF),
                                dependency: -1
                            ),
                            headStart
                        )
                    }
                }
            }
            let b = bytes[i]
            i += 1
            switch have {
            case 0...2: length = length << 8 | Int(b)
            case 3: type = b
            case 4: flags = b
            case 5...8: stream = stream << 8 | UInt32(b)
            case 9...12: dependency = dependency << 8 | UInt32(b)
            default: break  // the PRIORITY weight
            }
            have += 1
            if have == 9 && type == H2FrameHead.priority && length == 5 { continue }
            if have == 9 || have == 14 {
                let isPriority = have == 14
                let head = H2FrameHead(
                    length: length,
                    type: type,
                    flags: flags,
                    stream: Int32(bitPattern: stream & 0x7FFF_FFFF),
                    dependency: isPriority ? Int32(bitPattern: dependency & 0x7FFF_FFFF) : -1
                )
                skip = length - (have - 9)
                have = 0
                length = 0
                stream = 0
                dependency = 0
                return (i, head, headStart)
            }
        }
        return (i, nil, headStart)
    }
}

/// How the client left each of its most recent streams (a window of `capacity` client stream IDs below the highest
/// one that carried HEADERS), to answer frames on streams nghttp2 no longer has. Below the window nothing is known
/// and frames are left to nghttp2 (which ignores them), so memory stays fixed per connection.
struct H2StreamHistory {
    enum State: UInt8 {
        /// No HEADERS ever used this ID (skipped: implicitly closed, RFC 9113 §5.1.1).
        case unused = 0
        /// HEADERS seen; the client has not ended or reset the stream (it may be open, or closed by us: frames
        /// in flight must then be ignored, RFC 9113 §5.1 "closed").
        case opened
        /// The client sent END_STREAM: nothing but WINDOW_UPDATE/PRIORITY/RST_STREAM may follow.
        case endedByClient
        /// The client sent RST_STREAM: nothing but PRIORITY may follow.
        case resetByClient
        /// Answered once with RST_STREAM(STREAM_CLOSED); later frames are ignored.
        case answered
    }

    /// What to do with a frame, decided from its header before nghttp2 sees it.
    enum Verdict: Equatable {
        /// Leave it to nghttp2.
        case pass
        /// Stream error STREAM_CLOSED (RST_STREAM on the frame's stream).
        case resetStreamClosed
        /// Connection error (GOAWAY) with this RFC 9113 code.
        case connectionError(H2ErrorCode)
    }

    static let capacity = 256
    /// The highest client stream ID that carried HEADERS (0: none yet).
    private(set) var highest: Int32 = 0
    private var slots: [UInt8] = []

    init() {}

    private static func slot(_ id: Int32) -> Int { Int(id >> 1) & (capacity - 1) }

    /// The state of client stream `id`, or nil when it is not a client stream ID in the window.
    func state(_ id: Int32) -> State? {
        guard id > 0, id & 1 == 1, id <= highest, Int(highest) - Int(id) < 2 * Self.capacity, !slots.isEmpty else {
            return nil
        }
        return State(rawValue: slots[Self.slot(id)])
    }

    private mutating func set(_ id: Int32, _ s: State) {
        if state(id) != nil { slots[Self.slot(id)] = s.rawValue }
    }

    /// HEADERS on a client stream ID above every earlier one: the IDs between become `unused`.
    private mutating func open(_ id: Int32) {
        if slots.isEmpty { slots = [UInt8](repeating: 0, count: Self.capacity) }
        let gap = (Int(id) - Int(highest)) / 2
        if highest == 0 {
            // Fresh slots: every ID below is unused already.
        } else if gap >= Self.capacity {
            for k in slots.indices { slots[k] = State.unused.rawValue }
        } else {
            var s = highest + 2
            while s < id {
                slots[Self.slot(s)] = State.unused.rawValue
                s += 2
            }
        }
        highest = id
        slots[Self.slot(id)] = State.opened.rawValue
    }

    /// nghttp2 accepted a DATA or HEADERS frame with END_STREAM on `id`.
    mutating func clientEnded(_ id: Int32) {
        if state(id) == .opened { set(id, .endedByClient) }
    }

    /// nghttp2 accepted a RST_STREAM on `id`.
    mutating func clientReset(_ id: Int32) {
        if state(id) == .opened { set(id, .resetByClient) }
    }

    /// The verdict on a DATA or HEADERS frame header; records HEADERS that open a new stream ID.
    mutating func check(_ head: H2FrameHead) -> Verdict {
        let id = head.stream
        if head.type == H2FrameHead.headers && id > highest && id & 1 == 1 {
            open(id)
            return .pass
        }
        guard let s = state(id) else { return .pass }
        switch s {
        case .opened, .answered:
            return .pass
        case .unused:
            // RFC 9113 §5.1.1: a new stream ID must exceed every one used before (PROTOCOL_ERROR); DATA on an ID
            // no HEADERS ever used is a frame on a closed stream (§5.1: connection error STREAM_CLOSED).
            return head.type == H2FrameHead.headers ? .connectionError(.protocolError) : .connectionError(.streamClosed)
        case .endedByClient:
            // §5.1: frames after the client's END_STREAM are a connection error STREAM_CLOSED (what nghttp2 does
            // itself while the stream is still half-closed (remote)).
            return .connectionError(.streamClosed)
        case .resetByClient:
            // §5.1: any frame but PRIORITY after the client's RST_STREAM is a stream error STREAM_CLOSED. Once.
            set(id, .answered)
            return .resetStreamClosed
        }
    }

    /// Whether the verdict on a frame for `id` can change once earlier, unprocessed frames are processed (they
    /// can end or reset only streams that already carried HEADERS).
    func dependsOnEarlierFrames(_ head: H2FrameHead) -> Bool {
        !(head.type == H2FrameHead.headers && head.stream > highest)
    }
}
