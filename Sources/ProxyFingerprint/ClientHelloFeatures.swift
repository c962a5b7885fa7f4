/// The normalised feature set of a ClientHello that policy matchers evaluate.
///
/// GREASE values are removed from every list (their presence is kept in `greasePresent`); order is kept.
/// This is the contract between fingerprinting and the policy engine: matchers read only these fields.
public struct ClientHelloFeatures: Sendable, Equatable {
    /// `legacy_version` of the hello (0x0301 = TLS 1.0 ... 0x0303 = TLS 1.2).
    public var legacyVersion: UInt16
    /// supported_versions (ext 43) without GREASE, wire order; empty when the extension is absent.
    public var supportedVersions: [UInt16]
    /// The highest version offered: max(supported_versions) when present, else legacy_version.
    public var highestVersion: UInt16
    /// Cipher suites without GREASE, wire order (SCSVs 0x00ff and 0x5600 kept here).
    public var cipherSuites: [UInt16]
    /// Extension types without GREASE, wire order.
    public var extensions: [UInt16]
    /// supported_groups (ext 10) without GREASE, wire order.
    public var supportedGroups: [UInt16]
    /// ec_point_formats (ext 11), wire order.
    public var ecPointFormats: [UInt8]
    /// signature_algorithms (ext 13), wire order.
    public var signatureAlgorithms: [UInt16]
    /// ALPN protocol names in wire order (empty when absent).
    public var alpn: [String]
    /// key_share groups without GREASE.
    public var keyShareGroups: [UInt16]
    public var sniPresent: Bool
    public var greasePresent: Bool
    /// TLS_EMPTY_RENEGOTIATION_INFO_SCSV (0x00ff) in the cipher list.
    public var renegotiationSCSVPresent: Bool
    /// TLS_FALLBACK_SCSV (0x5600) in the cipher list.
    public var fallbackSCSVPresent: Bool
    public var sessionTicketExtPresent: Bool
    public var extendedMasterSecretExtPresent: Bool
    public var renegotiationInfoExtPresent: Bool
    public var sessionIDLength: Int
    public var compressionMethods: [UInt8]

    public init(
        legacyVersion: UInt16,
        supportedVersions: [UInt16],
        highestVersion: UInt16,
        cipherSuites: [UInt16],
        extensions: [UInt16],
        supportedGroups: [UInt16],
        ecPointFormats: [UInt8],
        signatureAlgorithms: [UInt16],
        alpn: [String],
        keyShareGroups: [UInt16],
        sniPresent: Bool,
        greasePresent: Bool,
        renegotiationSCSVPresent: Bool,
        fallbackSCSVPresent: Bool,
        sessionTicketExtPresent: Bool,
        extendedMasterSecretExtPresent: Bool,
        renegotiationInfoExtPresent: Bool,
        sessionIDLength: Int,
        compressionMethods: [UInt8]
    ) {
        self.legacyVersion = legacyVersion
        self.supportedVersions = supportedVersions
        self.highestVersion = highestVersion
        self.cipherSuites = cipherSuites
        self.extensions = extensions
        self.supportedGroups = supportedGroups
        self.ecPointFormats = ecPointFormats
        self.signatureAlgorithms = signatureAlgorithms
        self.alpn = alpn
        self.keyShareGroups = keyShareGroups
        self.sniPresent = sniPresent
        self.greasePresent = greasePresent
        self.renegotiationSCSVPresent = renegotiationSCSVPresent
        self.fallbackSCSVPresent = fallbackSCSVPresent
        self.sessionTicketExtPresent = sessionTicketExtPresent
        self.extendedMasterSecretExtPresent = extendedMasterSecretExtPresent
        self.renegotiationInfoExtPresent = renegotiationInfoExtPresent
        self.sessionIDLength = sessionIDLength
        self.compressionMethods = compressionMethods
    }
}

extension ClientHello {
    /// The normalised feature set (GREASE removed, presence flags derived).
    public var features: ClientHelloFeatures {
        var ext: [UInt16] = []
        ext.reserveCapacity(extensions.count)
        var extGREASE = false
        for i in extensions.indices {
            let t = extensions[i].type
            if Self.isGREASE(t) { extGREASE = true } else { ext.append(t) }
        }
        let suites = Self.withoutGREASE(cipherSuites)
        let groups = Self.withoutGREASE(supportedGroups)
        let versions = Self.withoutGREASE(supportedVersions ?? [])
        let greaseAnywhere =
            extGREASE || suites.grease || groups.grease || versions.grease
        return ClientHelloFeatures(
            legacyVersion: legacyVersion,
            supportedVersions: versions.list,
            highestVersion: versions.list.max() ?? legacyVersion,
            cipherSuites: suites.list,
            extensions: ext,
            supportedGroups: groups.list,
            ecPointFormats: ecPointFormats,
            signatureAlgorithms: Self.withoutGREASE(signatureAlgorithms).list,
            alpn: alpn,
            keyShareGroups: Self.withoutGREASE(keyShareGroups).list,
            sniPresent: ext.contains(0),
            greasePresent: greaseAnywhere,
            renegotiationSCSVPresent: cipherSuites.contains(0x00ff),
            fallbackSCSVPresent: cipherSuites.contains(0x5600),
            sessionTicketExtPresent: ext.contains(35),
            extendedMasterSecretExtPresent: ext.contains(23),
            renegotiationInfoExtPresent: ext.contains(0xff01),
            sessionIDLength: sessionIDLength,
            compressionMethods: compressionMethods
        )
    }

    /// `list` without GREASE values, and whether it had any. Shares `list`'s storage when there is none (most
    /// clients send no GREASE at all; a filter allocated a new array per list per handshake).
    @inline(__always)
    static func withoutGREASE(_ list: [UInt16]) -> (list: [UInt16], grease: Bool) {
        list.contains(where: isGREASE) ? (list.filter { !isGREASE($0) }, true) : (list, false)
    }
}
