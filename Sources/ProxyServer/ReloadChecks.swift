import ProxyConfig

extension EdgeProxyServer {
    /// What a reload cannot apply to a running process, as one message naming each changed setting with its old and
    /// new value; nil when nothing such changed. A reload that changes any of them is rejected as a whole: the
    /// listeners are bound (and, after an upgrade, inherited) once per process, one per worker, and the access log
    /// file and fields belong to the writer thread created at start. A restart applies them.
    static func restartOnlyChanges(from old: ProxyConfiguration, to new: ProxyConfiguration) -> String? {
        var changes: [String] = []
        if old.listen != new.listen { changes.append("listen \(old.listen) -> \(new.listen)") }
        if old.effectiveWorkers != new.effectiveWorkers {
            changes.append("workers \(old.effectiveWorkers) -> \(new.effectiveWorkers)")
        }
        if old.accessLog != new.accessLog { changes.append("access_log.path \(old.accessLog) -> \(new.accessLog)") }
        if old.accessLogFields != new.accessLogFields { changes.append("access_log.fields") }
        guard !changes.isEmpty else { return nil }
        return "\(changes.joined(separator: ", ")) take effect only on a restart; "
            + "change them back or restart (the running configuration stays in force)"
    }
}
