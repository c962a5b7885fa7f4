import XCTest

@testable import ProxyTickets

final class ProxyTicketsPlaceholderTests: XCTestCase {
    func testModuleLinks() {}
}
