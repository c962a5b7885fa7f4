import Glibc
import Logging
import ProxyConfig
import ProxyCore
import ProxyPolicy
import ProxyTLS

/// Builds the workers' `RuntimeSnapshot` from a configuration (ConfigMapping does the value mapping), keeping
/// what must survive reloads: the session cache and the policy directory's history. Control thread only.
final class SnapshotBuilder {
    private let logger: Logger
    /// The session cache (`[sessions]`), kept across reloads.
    let sessionCaches = SessionCacheHolder()
    private var policyGeneration: UInt64 = 0
    /// Policies were loaded from an existing directory at least once (a later missing directory is an error).
    private var policyDirWasLoaded = false

    init(logger: Logger) { self.logger = logger }

    /// Builds a runtime snapshot from a configuration. With `strictPolicies` a policy error fails the build;
    /// on reload a policy error keeps `previousPolicies` (the caller reports it).
    func build(
        _ c: ProxyConfiguration,
        stapler: OCSPStapler,
        previousPolicies: CompiledPolicySet?,
        strictPolicies: Bool
    ) throws
        -> RuntimeSnapshot
    {
        let tls = ConfigMapping.tlsSettings(c, sessionCache: try sessionCaches.cache(for: c), stapler: stapler)
        let contexts = try TLSContextSet(settings: tls)

        var policies: CompiledPolicySet? = previousPolicies
        if c.policies.enabled {
            do {
                policies = try loadPolicies(dir: c.policies.dir, missingIsError: !strictPolicies && policyDirWasLoaded)
            } catch {
                if strictPolicies { throw error }
                throw PolicyReloadError(underlying: error, kept: previousPolicies)
            }
        } else {
            policies = nil
        }
        return RuntimeSnapshot(
            tls: contexts,
            policies: policies,
            origins: ConfigMapping.origins(c, logger: logger),
            timeouts: ConfigMapping.timeouts(c.timeouts),
            limits: ConfigMapping.http1Limits(c.limits),
            fingerprintHeaders: c.policies.headers,
            maxConnectionsPerWorker: c.limits.maxConnectionsPerWorker,
            http2: HTTP2Options(c.http2, limits: c.limits),
            proxyProtocolFrom: c.listenProxyProtocol ? c.proxyProtocolFrom.compactMap(CIDRBlock.init) : nil
        )
    }

    /// Loads the policy directory. A missing directory is tolerated at start (a warning; no policies), but on a
    /// reload after policies were loaded from it, it is an error: a moved or unmounted directory must not silently
    /// switch the running packs off.
    private func loadPolicies(dir: String, missingIsError: Bool) throws -> CompiledPolicySet {
        policyGeneration += 1
        var isDir = false
        if !directoryExists(dir, isDir: &isDir) {
            if missingIsError {
                throw SyscallErrorLike("\(dir): policy directory not found (the previous policies stay in force)")
            }
            logger.warning("policy directory \(dir) does not exist: no policies loaded")
            return CompiledPolicySet(generation: policyGeneration, policies: [])
        }
        let result = try PolicyLoader.load(directory: dir, generation: policyGeneration)
        for d in result.warnings { logger.warning("\(d)") }
        policyDirWasLoaded = true
        logger.info(
            "loaded \(result.set.policies.count) polic\(result.set.policies.count == 1 ? "y" : "ies") from \(dir)"
        )
        return result.set
    }

    private func directoryExists(_ path: String, isDir: inout Bool) -> Bool {
        var st = stat()
        guard stat(path, &st) == 0 else { return false }
        isDir = (st.st_mode & S_IFMT) == S_IFDIR
        return isDir
    }
}

struct PolicyReloadError: Error {
    let underlying: Error
    let kept: CompiledPolicySet?
}
