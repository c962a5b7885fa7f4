/// A problem found while loading policy files, located as `file:line:column`.
public struct PolicyDiagnostic: Sendable, Equatable, CustomStringConvertible {
    public enum Severity: String, Sendable { case error, warning }

    public enum Kind: String, Sendable {
        /// TOML syntax error (position from the TOML parser).
        case syntax
        case io
        case unknownKey
        case wrongType
        case badValue
        case missingKey
        /// Two policies share a name (error: names identify policies in logs and metrics).
        case duplicateName
        /// Two enforce policies with the same priority can match the same hello (warning).
        case conflict
        /// The matcher is contradictory and can never match (warning).
        case neverMatches
        /// A higher-priority enforce policy matches everything this policy matches (warning).
        case unreachable
    }

    public var severity: Severity
    public var kind: Kind
    public var location: SourceLocation
    public var message: String

    public init(severity: Severity, kind: Kind, location: SourceLocation, message: String) {
        self.severity = severity
        self.kind = kind
        self.location = location
        self.message = message
    }

    /// `file:line:column: severity: message`
    public var description: String { "\(location): \(severity.rawValue): \(message)" }
}

/// Thrown when policy files cannot be loaded. `diagnostics` holds every error found (sorted by file and
/// position), followed by warnings; `description` prints one `file:line:column: error: message` per line.
public struct PolicyLoadError: Error, Sendable, CustomStringConvertible {
    public var diagnostics: [PolicyDiagnostic]
    public init(diagnostics: [PolicyDiagnostic]) { self.diagnostics = diagnostics }
    public var errors: [PolicyDiagnostic] { diagnostics.filter { $0.severity == .error } }
    public var description: String { diagnostics.map(\.description).joined(separator: "\n") }
}

/// A successfully loaded set plus the warnings found while analysing it.
public struct PolicyLoadResult: Sendable {
    public var set: CompiledPolicySet
    public var warnings: [PolicyDiagnostic]
}
