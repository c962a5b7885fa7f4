import XCTest

@testable import ProxyPolicy

final class ProxyPolicyPlaceholderTests: XCTestCase {
    func testModuleLinks() {}
}
