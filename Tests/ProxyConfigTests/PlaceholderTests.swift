import XCTest

@testable import ProxyConfig

final class ProxyConfigPlaceholderTests: XCTestCase {
    func testModuleLinks() {}
}
