import CProxyShims
import Glibc
import ProxyEventLoop

extension EdgeProxyServer {
    /// The signals the control loop handles: SIGTERM/SIGINT drain and stop, SIGHUP reloads, SIGUSR1 reopens the
    /// access log, SIGUSR2 starts a zero-downtime upgrade.
    static let handledSignals: [Int32] = [SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2]

    /// Signals are handled through signalfd on the control loop; block them in every thread (workers inherit the
    /// mask), and never die from a peer closing a socket. Called first thing in `run()`.
    static func blockHandledSignals() {
        signal(SIGPIPE, SIG_IGN)
        _ = handledSignals.withUnsafeBufferPointer { cps_sigmask_block($0.baseAddress, Int32($0.count)) }
    }

    func onSignal(_ sig: Int32) {
        switch sig {
        case SIGHUP:
            logger.notice("SIGHUP: reloading")
            _ = reload()
        case SIGUSR1:
            accessLog?.reopen()
        case SIGUSR2:
            upgrade?.start(listenFds: workers.map(\.listeningFd), draining: draining, loop: loop) { [unowned self] in
                self.beginDrain(closeIdle: false)
            }
        default:
            beginDrain()
        }
    }
}

/// SIGTERM/SIGINT/SIGHUP through a signalfd on the control loop.
final class SignalHandler: EventHandler {
    private let fd: Int32
    private let onSignal: (Int32) -> Void

    init(loop: EventLoop, signals: [Int32], onSignal: @escaping (Int32) -> Void) throws {
        fd = signals.withUnsafeBufferPointer { cps_signalfd($0.baseAddress, Int32($0.count)) }
        guard fd >= 0 else { throw SyscallError("signalfd", errno) }
        self.onSignal = onSignal
        try loop.register(fd: fd, interest: EventLoop.readable, handler: self)
    }

    func handleEvent(_ events: UInt32) {
        while true {
            let s = cps_signalfd_read_signo(fd)
            if s < 0 { return }
            onSignal(s)
        }
    }
}
