import ProxyCore
import XCTest

@testable import ProxyTickets

func t(_ seconds: Int64) -> Timestamp { Timestamp(secondsSinceEpoch: seconds) }

/// A key with recognisable bytes: name = nameByte repeated, AES = aesByte..., HMAC = hmacByte....
func makeKey(
    name nameByte: UInt8,
    cipher: TicketCipher = .aes256cbc,
    aes aesByte: UInt8 = 0x11,
    hmac hmacByte: UInt8 = 0x22,
    encryptFrom: Timestamp = .distantPast,
    encryptUntil: Timestamp = .distantFuture,
    decryptUntil: Timestamp = .distantFuture
) -> TicketKey {
    let name = [UInt8](repeating: nameByte, count: 16)
    let aes = (0..<cipher.aesKeyLength).map { aesByte &+ UInt8($0) }
    let hmac = (0..<cipher.hmacKeyLength).map { hmacByte &+ UInt8($0) }
    return name.withUnsafeBytes { n in
        TicketKey(
            name: n,
            cipher: cipher,
            aesKey: try! aes.withUnsafeBytes { try SecretBytes(copying: $0) },
            hmacKey: try! hmac.withUnsafeBytes { try SecretBytes(copying: $0) },
            encryptFrom: encryptFrom,
            encryptUntil: encryptUntil,
            decryptUntil: decryptUntil
        )
    }
}

func hex(_ bytes: some Sequence<UInt8>) -> String { bytes.map { String(format: "%02x", $0) }.joined() }

extension TicketKey {
    var nameBytes: [UInt8] { withUnsafeNameBytes { [UInt8]($0) } }
    var aesBytes: [UInt8] { aesKey.withUnsafeBytes { [UInt8]($0) } }
    var hmacBytes: [UInt8] { hmacKey.withUnsafeBytes { [UInt8]($0) } }
}
