// HTTP/2 framing, HPACK, flow control and the RFC 9113 messaging checks come from nghttp2 (Debian's
// libnghttp2-dev): this module only adapts it to the proxy's sans-IO shape and adds the abuse limits nghttp2 1.52
// leaves to the application (rapid reset with our own bucket and code, control-frame floods, header bombs), and the
// RFC 9113 stream-state and PRIORITY checks it cannot make in this configuration (H2InboundChecks.swift).
private import CNGHTTP2
import ProxyCore
import ProxyHTTP1

/// What `H2SessionHandler.h2DataReady` announced for one DATA frame.
public struct H2DataRead: Sendable {
    /// Body bytes that go in the frame (`h2WriteData` copies them when the frame is serialised).
    public var count: Int
    /// The body is complete after these bytes.
    public var eof: Bool
    /// With `eof`: the handler submitted trailers (`submitTrailers`), so the DATA frame must not end the stream.
    public var trailersFollow: Bool
    /// No bytes are available yet: the stream's DATA is paused until `resumeData`.
    public var deferred: Bool

    public init(count: Int, eof: Bool = false, trailersFollow: Bool = false) {
        self.count = count
        self.eof = eof
        self.trailersFollow = trailersFollow
        self.deferred = false
    }

    public static let deferred: H2DataRead = {
        var r = H2DataRead(count: 0)
        r.deferred = true
        return r
    }()
}

/// The owner of an `H2ServerSession`: receives stream events, called synchronously from inside
/// `receive(_:now:)` and `send(into:)`. It may call the session's `submit*`, `resetStream`, `consume` and
/// `resumeData` from these callbacks, never `receive` or `send`.
public protocol H2SessionHandler: AnyObject {
    /// A request head arrived. `endStream`: no body follows.
    func h2Request(stream: Int32, head: H2RequestHead, endStream: Bool)
    /// A request head was over the limits; answer `status` (431) on that stream.
    func h2RequestRejected(stream: Int32, status: Int)
    /// Request body bytes (valid during the call only). Call `consume` once they are forwarded.
    func h2Data(stream: Int32, bytes: UnsafeRawBufferPointer)
    /// Request trailers (the request ends right after).
    func h2Trailers(stream: Int32, trailers: HTTPHeaders)
    /// The request is complete.
    func h2EndStream(stream: Int32)
    /// The stream is gone (response sent and request complete, or reset by either side with `errorCode`).
    func h2StreamClosed(stream: Int32, errorCode: UInt32)
    /// How many response body bytes of `stream` go in its next DATA frame (at most `max`), and whether the body
    /// ends with them. Nothing is copied yet: the bytes must stay available until `h2WriteData` takes them.
    func h2DataReady(stream: Int32, max: Int) -> H2DataRead
    /// Appends the `count` bytes announced by the last `h2DataReady` of `stream` to `out` (which has room for
    /// them) and lets them go: the DATA frame is being serialised. Called once per announcement with a non-zero
    /// count, unless the stream closed in between.
    func h2WriteData(stream: Int32, count: Int, into out: ByteBuffer)
    /// Our END_STREAM for `stream` (on HEADERS, DATA or trailers) was serialised: the response is complete on the
    /// wire, so a RST_STREAM(NO_ERROR) queued now follows it (queued earlier it could overtake the HEADERS).
    func h2ResponseEndSent(stream: Int32)
}

extension H2SessionHandler {
    public func h2ResponseEndSent(stream: Int32) {}
}

/// One HTTP/2 server connection's protocol state on an nghttp2 session, driven sans-IO: feed received bytes to
/// `receive(_:now:)`, drain bytes to send with `send(into:)`. Not thread-safe; one owner on one thread.
///
/// Response bodies are not copied into nghttp2: DATA frames use `NGHTTP2_DATA_FLAG_NO_COPY`, so `send(into:)`
/// writes each frame's header and the handler's bytes straight into the output buffer (one copy fewer per byte).
///
/// nghttp2's automatic WINDOW_UPDATEs are off: the stream and connection windows re-open only when the owner
/// calls `consume` for bytes it forwarded, so a stream's buffered request body never exceeds
/// `initialWindowSize` and a slow origin slows that stream's client only.
public final class H2ServerSession {
    private var session: OpaquePointer!
    // SAFETY: the handler owns this session and outlives it; callbacks run only inside receive/send/submit calls
    // the handler makes, so the reference is valid whenever it is used.
    private unowned(unsafe) let handler: H2SessionHandler
    private let settings: H2Settings
    private var head = H2RequestHead()
    /// Stream whose header block is being received (0: none) and whether it is a trailer block.
    private var headStream: Int32 = 0
    private var headIsTrailer = false
    private var headTooLarge = false
    private var trailers = HTTPHeaders(reservingBytes: 256)
    private var resets: TokenBucket
    private var controls: TokenBucket
    private var now: UInt64 = 0
    /// Set once the session gave up on the connection.
    public private(set) var failure: H2Failure?
    /// Bytes from `mem_send` that did not fit the caller's buffer.
    private var pending: [UInt8] = []
    private var pendingStart = 0
    /// The buffer `send(into:)` is filling, for the DATA frames nghttp2 hands to `sendData` (nil outside it).
    private unowned(unsafe) var target: ByteBuffer?
    /// Inside `receive` or `send`: the handler is being called from nghttp2, which must not be entered again.
    public private(set) var isBusy = false
    private var nv: [nghttp2_nv] = []
    /// Client RST_STREAM frames received (for metrics).
    public private(set) var resetsReceived = 0
    /// Frame headers of the input, seen before nghttp2 processes the frames.
    private var tap = H2FrameTap()
    /// How the client left its recent streams.
    private var history = H2StreamHistory()
    /// Bytes handed to `receive` but not yet to nghttp2 hold a frame that ends or resets a stream on the client's
    /// side: a check that depends on stream state must let nghttp2 process them first.
    private var unprocessedEnds = false

    /// Creates the session and queues the server preface (SETTINGS).
    public init(settings: H2Settings, handler: H2SessionHandler) {
        self.settings = settings
        self.handler = handler
        self.resets = TokenBucket(burst: settings.resetBurst, rate: settings.resetRate)
        self.controls = TokenBucket(burst: settings.controlBurst, rate: settings.controlRate)
        nv.reserveCapacity(32)

        var cbs: OpaquePointer?
        nghttp2_session_callbacks_new(&cbs)
        defer { nghttp2_session_callbacks_del(cbs) }
        nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, onBeginHeaders)
        nghttp2_session_callbacks_set_on_header_callback(cbs, onHeader)
        nghttp2_session_callbacks_set_on_invalid_header_callback(cbs, onInvalidHeader)
        nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, onFrameRecv)
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, onDataChunk)
        nghttp2_session_callbacks_set_on_stream_close_callback(cbs, onStreamClose)
        nghttp2_session_callbacks_set_on_frame_send_callback(cbs, onFrameSend)
        nghttp2_session_callbacks_set_send_data_callback(cbs, onSendData)

        var opt: OpaquePointer?
        nghttp2_option_new(&opt)
        defer { nghttp2_option_del(opt) }
        nghttp2_option_set_no_auto_window_update(opt, 1)
        nghttp2_option_set_max_continuations(opt, settings.maxContinuations)
        nghttp2_option_set_max_outbound_ack(opt, settings.maxOutboundAcks)
        nghttp2_option_set_max_settings(opt, 32)
        // Our own bucket answers first with ENHANCE_YOUR_CALM; nghttp2's (INTERNAL_ERROR) stays as a backstop.
        nghttp2_option_set_stream_reset_rate_limit(
            opt,
            UInt64(settings.resetBurst) * 2,
            UInt64(max(1, settings.resetRate)) * 2
        )
        // No priority tree, so no closed streams kept for one. (With NO_RFC7540_PRIORITIES=1 below nghttp2 keeps none
        // regardless; the checks that need closed streams are H2StreamHistory's.)
        nghttp2_option_set_no_closed_streams(opt, 1)

        var s: OpaquePointer?
        // SAFETY: unretained; the session is deleted in deinit, so user_data never outlives self.
        let rv = nghttp2_session_server_new2(&s, cbs, Unmanaged.passUnretained(self).toOpaque(), opt)
        precondition(rv == 0 && s != nil, "nghttp2_session_server_new2 failed: \(rv)")
        session = s

        var iv: [nghttp2_settings_entry] = [
            .init(
                settings_id: Int32(NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS.rawValue),
                value: UInt32(settings.maxConcurrentStreams)
            ),
            .init(
                settings_id: Int32(NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE.rawValue),
                value: UInt32(settings.initialWindowSize)
            ),
            .init(
                settings_id: Int32(NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE.rawValue),
                value: UInt32(settings.maxHeaderListSize)
            ),
            .init(settings_id: Int32(NGHTTP2_SETTINGS_ENABLE_PUSH.rawValue), value: 0),
            .init(settings_id: Int32(NGHTTP2_SETTINGS_NO_RFC7540_PRIORITIES.rawValue), value: 1),
        ]
        if settings.enableConnectProtocol {
            iv.append(.init(settings_id: Int32(NGHTTP2_SETTINGS_ENABLE_CONNECT_PROTOCOL.rawValue), value: 1))
        }
        _ = nghttp2_submit_settings(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), &iv, iv.count)
        // The connection window covers every stream's window, so one stream cannot starve the others.
        let connectionWindow = Int32(clamping: settings.initialWindowSize * max(1, settings.maxConcurrentStreams))
        if connectionWindow > 65535 {
            _ = nghttp2_session_set_local_window_size(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), 0, connectionWindow)
        }
    }

    deinit { nghttp2_session_del(session) }

    // MARK: driving

    /// Processes received bytes (all of them, or fails). Events reach the handler during the call. Returns the
    /// failure that ended the session, if any: then a GOAWAY is queued (except `.badPreface`); flush it and close.
    ///
    /// The bytes go to nghttp2 in as few pieces as the checks allow: the input is cut only before a frame whose
    /// verdict depends on earlier frames of the same input (DATA or HEADERS on a known stream after a frame that
    /// ended or reset a stream), and before a frame that is answered with an error (so that everything before it
    /// counts, and the GOAWAY names the last stream processed).
    @discardableResult
    public func receive(_ bytes: UnsafeRawBufferPointer, now: UInt64) -> H2Failure? {
        if let failure { return failure }
        self.now = now
        guard bytes.count > 0 else { return nil }
        isBusy = true
        defer { isBusy = false }
        var fed = 0
        var i = 0
        scan: while i < bytes.count {
            let (end, next, headStart) = tap.next(bytes, from: i)
            i = end
            guard let head = next else { break }
            switch head.type {
            case H2FrameHead.data, H2FrameHead.headers:
                if unprocessedEnds && history.dependsOnEarlierFrames(head) {
                    guard feed(bytes, from: &fed, to: headStart) else { break scan }
                }
                let verdict = history.check(head)
                if verdict != .pass {
                    guard feed(bytes, from: &fed, to: headStart) else { break scan }
                    answer(verdict, stream: head.stream)
                }
                if head.endsClientSide { unprocessedEnds = true }
            case H2FrameHead.rstStream:
                unprocessedEnds = true
            case H2FrameHead.priority:
                let verdict = checkPriority(head)
                if verdict != .pass {
                    guard feed(bytes, from: &fed, to: headStart) else { break scan }
                    answer(verdict, stream: head.stream)
                }
            default:
                break
            }
            if failure != nil { return failure }
        }
        if failure == nil { _ = feed(bytes, from: &fed, to: bytes.count) }
        return failure
    }

    /// Hands `bytes[from..<to]` to nghttp2. False once the session no longer reads (it failed or is closing): then
    /// no check matters any more.
    private func feed(_ bytes: UnsafeRawBufferPointer, from: inout Int, to: Int) -> Bool {
        if to > from, let base = bytes.baseAddress {
            let rv = nghttp2_session_mem_recv(session, (base + from).assumingMemoryBound(to: UInt8.self), to - from)
            from = to
            if rv < 0 { fail(code: Int32(rv)) }
        }
        unprocessedEnds = false
        return failure == nil && nghttp2_session_want_read(session) != 0
    }

    /// RFC 9113 §6.3 and §5.3.1 for a PRIORITY frame (which nghttp2 skips unread), and the control-frame limiter.
    private func checkPriority(_ head: H2FrameHead) -> H2StreamHistory.Verdict {
        // A PRIORITY frame of another length is nghttp2's FRAME_SIZE_ERROR; `dependency` is -1 then.
        if head.dependency >= 0 {
            // §6.3: stream 0 is a connection error. §5.3.1: depending on itself is a stream error, but the stream
            // is usually idle, and RST_STREAM must not be sent on an idle stream (§6.4): a connection error, as
            // nghttp2 answers a HEADERS frame that depends on itself.
            if head.stream == 0 || head.dependency == head.stream { return .connectionError(.protocolError) }
        }
        if !controls.take(now: now) { return .connectionError(.enhanceYourCalm) }
        return .pass
    }

    private func answer(_ verdict: H2StreamHistory.Verdict, stream: Int32) {
        switch verdict {
        case .pass:
            break
        case .resetStreamClosed:
            resetStream(stream, code: .streamClosed)
        case .connectionError(.enhanceYourCalm):
            _ = abuse(.controlFlood)
        case .connectionError(let code):
            failure = .protocolError
            _ = nghttp2_session_terminate_session(session, code.rawValue)
        }
    }

    private func fail(code rv: Int32) {
        if failure == nil {
            switch rv {
            case NGHTTP2_ERR_BAD_CLIENT_MAGIC.rawValue: failure = .badPreface
            case NGHTTP2_ERR_FLOODED.rawValue: failure = .ackFlood
            case NGHTTP2_ERR_TOO_MANY_CONTINUATIONS.rawValue: failure = .continuationFlood
            default: failure = .protocolError
            }
        }
        switch failure! {
        case .badPreface: break
        case .protocolError: _ = nghttp2_session_terminate_session(session, NGHTTP2_PROTOCOL_ERROR.rawValue)
        default: _ = nghttp2_session_terminate_session(session, NGHTTP2_ENHANCE_YOUR_CALM.rawValue)
        }
    }

    /// Ends the connection from the application side (GOAWAY with `code`; in-flight streams are abandoned).
    public func terminate(_ code: H2ErrorCode, failure f: H2Failure? = nil) {
        if failure == nil { failure = f }
        _ = nghttp2_session_terminate_session(session, code.rawValue)
    }

    /// Graceful shutdown: GOAWAY(NO_ERROR) naming the last stream processed; those streams complete, later ones
    /// are refused. `wantsRead`/`wantsWrite` turn false once everything is done.
    public func goAway() {
        let last = nghttp2_session_get_last_proc_stream_id(session)
        _ = nghttp2_submit_goaway(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), last, NGHTTP2_NO_ERROR.rawValue, nil, 0)
    }

    /// First half of a graceful shutdown (RFC 9113 §6.8): GOAWAY with the largest stream ID, so the client stops
    /// opening streams while those already on the wire are still processed. Send `goAway()` about one round trip
    /// later; a single GOAWAY naming the last processed stream would refuse requests already in flight.
    public func shutdownNotice() {
        _ = nghttp2_submit_shutdown_notice(session)
    }

    /// Appends bytes to send to `out` while it has room for a whole frame. Returns true when anything was added.
    @discardableResult
    public func send(into out: ByteBuffer) -> Bool {
        let before = out.readableCount
        if pendingStart < pending.count {
            let n = min(out.freeCount, pending.count - pendingStart)
            _ = pending.withUnsafeBytes {
                out.append(UnsafeRawBufferPointer(rebasing: $0[pendingStart..<pendingStart + n]))
            }
            pendingStart += n
            if pendingStart < pending.count { return n > 0 }
            pending.removeAll(keepingCapacity: true)
            pendingStart = 0
        }
        // A DATA frame is at most 16 KiB + 9 (nghttp2's payload limit); larger HEADERS blocks spill into `pending`.
        // Several DATA frames may go out within one `mem_send` call, each through `sendData`; one that no longer
        // fits makes `mem_send` return 0 and is offered again by the next call.
        target = out
        isBusy = true
        defer {
            target = nil
            isBusy = false
        }
        while out.freeCount >= 16384 + 9 {
            var p: UnsafePointer<UInt8>?
            let n = nghttp2_session_mem_send(session, &p)
            if n < 0 {
                fail(code: Int32(n))
                break
            }
            guard n > 0, let p else { break }
            let fit = min(n, out.freeCount)
            out.append(UnsafeRawBufferPointer(start: p, count: fit))
            if fit < n {
                pending.append(contentsOf: UnsafeBufferPointer(start: p + fit, count: n - fit))
                break
            }
        }
        return out.readableCount != before
    }

    /// The peer may still send something we will process.
    public var wantsRead: Bool { nghttp2_session_want_read(session) != 0 }
    /// There are frames to send (call `send`).
    public var wantsWrite: Bool { pendingStart < pending.count || nghttp2_session_want_write(session) != 0 }

    // MARK: submitting

    /// Queues response HEADERS for `stream`. `hasBody`: DATA follows, pulled through `h2ReadData`.
    public func submitResponse(stream: Int32, headers: H2HeaderBlock, hasBody: Bool) {
        var prd = nghttp2_data_provider()
        prd.source.ptr = nil
        prd.read_callback = readData
        withNV(headers) { nva, n in
            if hasBody {
                _ = nghttp2_submit_response(session, stream, nva, n, &prd)
            } else {
                _ = nghttp2_submit_response(session, stream, nva, n, nil)
            }
        }
    }

    /// Queues trailers; call from `h2ReadData` before returning `eof` with `trailersFollow`.
    public func submitTrailers(stream: Int32, headers: H2HeaderBlock) {
        withNV(headers) { nva, n in _ = nghttp2_submit_trailer(session, stream, nva, n) }
    }

    /// Resets `stream` with `code`.
    public func resetStream(_ stream: Int32, code: H2ErrorCode) {
        _ = nghttp2_submit_rst_stream(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), stream, code.rawValue)
    }

    /// Re-opens the windows for `count` request-body bytes of `stream` that left the proxy's buffers (also for a
    /// stream already closed: the connection window still needs them back).
    public func consume(stream: Int32, count: Int) {
        guard count > 0 else { return }
        _ = nghttp2_session_consume(session, stream, count)
    }

    /// Response bytes became available for a stream whose DATA was deferred.
    public func resumeData(stream: Int32) {
        _ = nghttp2_session_resume_data(session, stream)
    }

    /// The peer's flow-control window for our DATA on `stream` (the smaller of stream and connection windows).
    public func sendWindow(stream: Int32) -> Int {
        let s = Int(nghttp2_session_get_stream_remote_window_size(session, stream))
        let c = Int(nghttp2_session_get_remote_window_size(session))
        return min(s, c)
    }

    private func withNV(_ block: H2HeaderBlock, _ body: (UnsafePointer<nghttp2_nv>?, Int) -> Void) {
        nv.removeAll(keepingCapacity: true)
        // SAFETY: nghttp2 copies names and values at submission (no NO_COPY flags) and never writes through
        // these pointers; the block's buffer is alive and unchanged for the whole call.
        let m = block.bytes
        for (start, nl, vl) in block.entries {
            nv.append(
                nghttp2_nv(
                    name: m + Int(start),
                    value: m + Int(start + nl),
                    namelen: Int(nl),
                    valuelen: Int(vl),
                    flags: UInt8(NGHTTP2_NV_FLAG_NONE.rawValue)
                )
            )
        }
        nv.withUnsafeBufferPointer { body($0.baseAddress, $0.count) }
    }

    // MARK: callbacks (called through the trampolines below)

    fileprivate func beginHeaders(stream: Int32, isTrailer: Bool) {
        headStream = stream
        headIsTrailer = isTrailer
        headTooLarge = false
        head.reset()
        trailers.removeAllKeepingCapacity()
    }

    fileprivate func header(
        stream: Int32,
        name: UnsafeRawBufferPointer,
        value: UnsafeRawBufferPointer
    ) -> Int32 {
        guard stream == headStream else { return 0 }
        head.listSize += name.count + value.count + 32
        if head.listSize > settings.maxHeaderListSize {
            if head.listSize > 4 * settings.maxHeaderListSize {
                // Far beyond what we advertised: a decompression or CONTINUATION bomb, not a big request.
                failure = .headerBomb
                return NGHTTP2_ERR_CALLBACK_FAILURE.rawValue
            }
            headTooLarge = true
            return 0
        }
        if headTooLarge { return 0 }
        if headIsTrailer {
            if name.first == 0x3A { return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE.rawValue }
            trailers.append(name: name, value: value)
            return 0
        }
        if name.first == 0x3A {
            // nghttp2 already checked: known pseudo-field, not repeated, before regular fields.
            let start = head.pseudo.count
            head.pseudo.append(contentsOf: value)
            let r = start..<head.pseudo.count
            switch name.count {
            case 7 where name[1] == 0x6D:  // :method
                head.methodRange = r
                head.methodKind = HTTPMethod.classify(value)
            case 7 where name[1] == 0x73: head.schemeRange = r  // :scheme
            case 5: head.pathRange = r  // :path
            case 10: head.authorityRange = r  // :authority
            case 9: head.protocolRange = r  // :protocol (only accepted after SETTINGS_ENABLE_CONNECT_PROTOCOL)
            default: break
            }
            return 0
        }
        if head.headers.count >= settings.maxHeaderCount {
            headTooLarge = true
            return 0
        }
        if name.count == 14 && name.elementsEqual("content-length".utf8) {
            var n = 0
            for b in value { n = n &* 10 &+ Int(b &- 0x30) }  // digits only: nghttp2 validated it
            head.contentLength = n
        }
        head.headers.append(name: name, value: value)
        return 0
    }

    fileprivate func frameReceived(
        type: UInt8,
        flags: UInt8,
        stream: Int32,
        length: Int,
        category: UInt32
    )
        -> Int32
    {
        let endStream = flags & UInt8(NGHTTP2_FLAG_END_STREAM.rawValue) != 0
        switch UInt32(type) {
        case NGHTTP2_HEADERS.rawValue:
            if endStream { history.clientEnded(stream) }
            guard stream == headStream else { return 0 }
            headStream = 0
            if headIsTrailer {
                if headTooLarge {
                    resetStream(stream, code: .enhanceYourCalm)
                    return 0
                }
                handler.h2Trailers(stream: stream, trailers: trailers)
                if endStream { handler.h2EndStream(stream: stream) }
            } else if category == NGHTTP2_HCAT_REQUEST.rawValue {
                if headTooLarge {
                    handler.h2RequestRejected(stream: stream, status: 431)
                } else {
                    // Moved out for the call and back after it: passing the stored property itself copied the
                    // head (a retain and release of each of its arrays) on every request.
                    var h = H2RequestHead(unreserved: ())
                    swap(&h, &head)
                    handler.h2Request(stream: stream, head: h, endStream: endStream)
                    swap(&h, &head)
                }
            }
        case NGHTTP2_DATA.rawValue:
            if endStream {
                history.clientEnded(stream)
                handler.h2EndStream(stream: stream)
            } else if length == 0 && !controls.take(now: now) {
                return abuse(.controlFlood)
            }
        case NGHTTP2_RST_STREAM.rawValue:
            history.clientReset(stream)
            resetsReceived += 1
            if !resets.take(now: now) { return abuse(.rapidReset) }
        // PRIORITY frames take their token in `checkPriority`: nghttp2 does not report them.
        case NGHTTP2_PING.rawValue, NGHTTP2_SETTINGS.rawValue:
            if flags & UInt8(NGHTTP2_FLAG_ACK.rawValue) == 0 && !controls.take(now: now) {
                return abuse(.controlFlood)
            }
        default:
            break
        }
        return 0
    }

    private func abuse(_ f: H2Failure) -> Int32 {
        failure = f
        _ = nghttp2_session_terminate_session(session, NGHTTP2_ENHANCE_YOUR_CALM.rawValue)
        return 0
    }

    fileprivate func dataChunk(stream: Int32, bytes: UnsafeRawBufferPointer) {
        handler.h2Data(stream: stream, bytes: bytes)
    }

    fileprivate func responseEndSent(stream: Int32) { handler.h2ResponseEndSent(stream: stream) }

    fileprivate func streamClosed(stream: Int32, errorCode: UInt32) {
        if stream == headStream { headStream = 0 }
        handler.h2StreamClosed(stream: stream, errorCode: errorCode)
    }

    fileprivate func read(stream: Int32, max: Int, flags: UnsafeMutablePointer<UInt32>) -> Int {
        let r = handler.h2DataReady(stream: stream, max: max)
        if r.deferred { return Int(NGHTTP2_ERR_DEFERRED.rawValue) }
        if r.count > 0 { flags.pointee |= NGHTTP2_DATA_FLAG_NO_COPY.rawValue }
        if r.eof {
            flags.pointee |= NGHTTP2_DATA_FLAG_EOF.rawValue
            if r.trailersFollow { flags.pointee |= NGHTTP2_DATA_FLAG_NO_END_STREAM.rawValue }
        }
        return r.count
    }

    /// One whole DATA frame announced with NO_COPY: its 9-byte header, the optional pad length, the handler's
    /// bytes, the padding. Nothing is written unless all of it fits (a frame cannot be sent in part). A handler
    /// that did not write exactly what it announced gets its stream reset (INTERNAL_ERROR) and the frame is taken
    /// back, so the connection's framing stays intact.
    fileprivate func sendData(stream: Int32, header: UnsafePointer<UInt8>, count: Int, padding: Int) -> Int32 {
        guard let out = target, out.freeCount >= 9 + count + padding else { return NGHTTP2_ERR_WOULDBLOCK.rawValue }
        let mark = out.readableCount
        out.append(UnsafeRawBufferPointer(start: header, count: 9))
        if padding > 0 {
            var padLength = UInt8(truncatingIfNeeded: padding - 1)
            withUnsafeBytes(of: &padLength) { _ = out.append($0) }
        }
        let before = out.readableCount
        handler.h2WriteData(stream: stream, count: count, into: out)
        if out.readableCount - before != count {
            out.end = out.start + mark
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE.rawValue
        }
        if padding > 1 {
            let tail = out.writable
            tail.baseAddress!.initializeMemory(as: UInt8.self, repeating: 0, count: padding - 1)
            out.commit(padding - 1)
        }
        return 0
    }
}

// MARK: - trampolines: recover the session from user_data (unretained, see init) and call one method.

@inline(__always)
private func owner(_ ud: UnsafeMutableRawPointer?) -> H2ServerSession {
    // SAFETY: user_data is the unretained H2ServerSession that owns this nghttp2 session (alive during callbacks).
    Unmanaged<H2ServerSession>.fromOpaque(ud!).takeUnretainedValue()
}

private let onBeginHeaders: nghttp2_on_begin_headers_callback = { _, frame, ud in
    guard let f = frame?.pointee else { return 0 }
    let s = owner(ud)
    s.beginHeaders(stream: f.hd.stream_id, isTrailer: f.headers.cat.rawValue == NGHTTP2_HCAT_HEADERS.rawValue)
    return 0
}

private let onHeader: nghttp2_on_header_callback = { _, frame, name, namelen, value, valuelen, _, ud in
    guard let f = frame?.pointee else { return 0 }
    return owner(ud).header(
        stream: f.hd.stream_id,
        name: UnsafeRawBufferPointer(start: name, count: namelen),
        value: UnsafeRawBufferPointer(start: value, count: valuelen)
    )
}

/// RFC 9113 §8.2.1: a field nghttp2 would merely ignore is still malformed; reset the stream (PROTOCOL_ERROR).
private let onInvalidHeader: nghttp2_on_invalid_header_callback = { _, _, _, _, _, _, _, _ in
    NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE.rawValue
}

private let onFrameRecv: nghttp2_on_frame_recv_callback = { _, frame, ud in
    guard let f = frame?.pointee else { return 0 }
    return owner(ud).frameReceived(
        type: f.hd.type,
        flags: f.hd.flags,
        stream: f.hd.stream_id,
        length: f.hd.length,
        category: f.hd.type == UInt8(NGHTTP2_HEADERS.rawValue) ? f.headers.cat.rawValue : 0
    )
}

private let onDataChunk: nghttp2_on_data_chunk_recv_callback = { _, _, stream, data, len, ud in
    owner(ud).dataChunk(stream: stream, bytes: UnsafeRawBufferPointer(start: data, count: len))
    return 0
}

private let onFrameSend: nghttp2_on_frame_send_callback = { _, frame, ud in
    guard let hd = frame?.pointee.hd, hd.stream_id != 0, hd.flags & UInt8(NGHTTP2_FLAG_END_STREAM.rawValue) != 0,
        hd.type == UInt8(NGHTTP2_HEADERS.rawValue) || hd.type == UInt8(NGHTTP2_DATA.rawValue)
    else { return 0 }
    owner(ud).responseEndSent(stream: hd.stream_id)
    return 0
}

private let onStreamClose: nghttp2_on_stream_close_callback = { _, stream, code, ud in
    owner(ud).streamClosed(stream: stream, errorCode: code)
    return 0
}

private let readData: nghttp2_data_source_read_callback = { _, stream, _, length, flags, _, ud in
    owner(ud).read(stream: stream, max: length, flags: flags!)
}

private let onSendData: nghttp2_send_data_callback = { _, frame, framehd, length, _, ud in
    guard let f = frame?.pointee, let framehd else { return NGHTTP2_ERR_CALLBACK_FAILURE.rawValue }
    return owner(ud).sendData(stream: f.hd.stream_id, header: framehd, count: length, padding: Int(f.data.padlen))
}
