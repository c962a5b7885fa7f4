import XCTest

@testable import ProxyHTTP1

final class ProxyHTTP1PlaceholderTests: XCTestCase {
    func testModuleLinks() {}
}
