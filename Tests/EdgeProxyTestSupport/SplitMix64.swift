/// SplitMix64: seeded, reproducible randomness for the unit tests' property and mutation tests, so a failure
/// reproduces from its seed. One definition for every test target (test targets cannot see each other's code).
public struct SplitMix64: RandomNumberGenerator {
    public var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A value in 0..<upTo (0 when upTo <= 1).
    public mutating func int(_ upTo: Int) -> Int { Int(next() % UInt64(max(upTo, 1))) }

    public mutating func bool() -> Bool { next() & 1 == 1 }

    /// `n` bytes.
    public mutating func bytes(_ n: Int) -> [UInt8] { (0..<n).map { _ in UInt8(truncatingIfNeeded: next()) } }
}
