import XCTest

@testable import ProxyFingerprint

final class ProxyFingerprintPlaceholderTests: XCTestCase {
    func testModuleLinks() {}
}
