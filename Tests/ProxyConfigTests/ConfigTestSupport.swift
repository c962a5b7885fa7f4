import XCTest

@testable import ProxyConfig

/// Parses `text` expecting failure and returns the rendered diagnostics (`file:line:column: message`).
func diagnostics(
    _ text: String,
    file: StaticString = #filePath,
    line: UInt = #line
) -> [String] {
    do {
        let config = try ProxyConfiguration.parse(text: text, fileName: "t.toml")
        XCTFail("expected an error, got \(config)", file: file, line: line)
        return []
    } catch {
        return error.diagnostics.map(\.description)
    }
}

/// Parses `text` expecting success.
func parsed(_ text: String, file: StaticString = #filePath, line: UInt = #line) -> ProxyConfiguration? {
    do {
        return try ProxyConfiguration.parse(text: text, fileName: "t.toml")
    } catch {
        XCTFail("unexpected error:\n\(error)", file: file, line: line)
        return nil
    }
}

/// Asserts that `text` fails with exactly one diagnostic at `position` ("line:column") containing `fragment`.
func assertSingleError(
    _ text: String,
    at position: String,
    _ fragment: String,
    file: StaticString = #filePath,
    line: UInt = #line
) {
    let found = diagnostics(text, file: file, line: line)
    XCTAssertEqual(found.count, 1, "\(found)", file: file, line: line)
    guard let first = found.first else { return }
    XCTAssertTrue(first.hasPrefix("t.toml:\(position): "), first, file: file, line: line)
    XCTAssertTrue(first.contains(fragment), first, file: file, line: line)
}
