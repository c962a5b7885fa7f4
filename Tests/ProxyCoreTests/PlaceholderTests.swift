import XCTest

@testable import ProxyCore

final class ProxyCorePlaceholderTests: XCTestCase {
    func testModuleLinks() {}
}
