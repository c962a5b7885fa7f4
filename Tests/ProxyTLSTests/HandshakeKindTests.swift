import XCTest

@testable import ProxyTLS

final class HandshakeKindTests: XCTestCase {
    /// Every ticket outcome maps to what the handshake cost: the histogram's kinds group the counter's outcomes.
    func testEveryOutcomeHasItsKind() {
        let expected: [TicketOutcome: HandshakeKind] = [
            .full: .full, .unknownKey: .full, .expiredKey: .full,
            .resumed: .resumed, .resumedRenewedInline: .resumed, .staleResumedNoRenewal: .resumed,
            .resumedSessionID: .resumed,
            .staleForcedFull: .forcedFull,
        ]
        XCTAssertEqual(Set(expected.keys), Set(TicketOutcome.allCases))
        for (outcome, kind) in expected { XCTAssertEqual(outcome.handshakeKind, kind, "\(outcome)") }
        XCTAssertEqual(HandshakeKind.allCases.map(\.label), ["full", "resumed", "forced_full"])
    }
}
