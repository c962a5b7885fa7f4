import ProxyCore
import XCTest

@testable import ProxyTickets

/// The whole ticket decision table (`TicketDecision.decide`): every key state × stale action × TLS version ×
/// TLS 1.3 ticket count in the configurable range 0...16. The expectations are written out per row of the table
/// in TLS-NOTES.md ("Tickets") and TicketDecision's doc comment, not derived from the implementation.
final class TicketDecisionTests: XCTestCase {
    typealias C = TicketDecision.Callback

    /// The expected row: (callback, outcome, extra tickets after a resumption).
    private func expected(
        _ key: PresentedTicketKey,
        _ stale: StaleTicketAction,
        tls13: Bool,
        tickets n: Int
    ) -> (C, TicketOutcome, Int) {
        // TLS 1.3: OpenSSL 3.0 sends at most one ticket on a resumption; the connection tops up the rest.
        let topUp = tls13 ? max(n - 1, 0) : 0
        switch (key, stale, tls13) {
        case (.none, _, _): return (.refuse, .full, topUp)
        case (.unknown, _, _): return (.refuse, .unknownKey, topUp)
        case (.expired, _, _): return (.refuse, .expiredKey, topUp)
        // Current or next key: resume; TLS 1.2 without a new ticket, TLS 1.3 with one unless the count is 0.
        case (.current, _, false), (.next, _, false): return (.resume, .resumed, 0)
        case (.current, _, true), (.next, _, true): return (n == 0 ? .resume : .resumeAndRenew, .resumed, topUp)
        // Stale key: the connection's action.
        case (.stale, .fullHandshake, _): return (.refuse, .staleForcedFull, topUp)
        case (.stale, .resumeWithoutRenewal, _): return (.resume, .staleResumedNoRenewal, 0)
        case (.stale, .renewInline, false): return (.resumeAndRenew, .resumedRenewedInline, 0)
        case (.stale, .renewInline, true): return (n == 0 ? .resume : .resumeAndRenew, .resumedRenewedInline, topUp)
        }
    }

    func testWholeTable() {
        var rows = 0
        for key in PresentedTicketKey.allCases {
            for stale in StaleTicketAction.allCases {
                for tls13 in [false, true] {
                    for n in 0...16 {
                        let d = TicketDecision.decide(key: key, stale: stale, tls13: tls13, tickets: n)
                        let (c, o, extra) = expected(key, stale, tls13: tls13, tickets: n)
                        let row = "\(key) \(stale.rawValue) tls13=\(tls13) tickets=\(n)"
                        XCTAssertEqual(d.callback, c, row)
                        XCTAssertEqual(d.outcome, o, row)
                        XCTAssertEqual(d.extraTicketsAfterResumption, extra, row)
                        XCTAssertEqual(d.decrypts, c != .refuse, row)
                        rows += 1
                    }
                }
            }
        }
        XCTAssertEqual(rows, 6 * 3 * 2 * 17)
    }

    /// The rows that matter most, spelled out: SChannel's failure (TLS 1.2 inline renewal) happens only for a
    /// stale key under `renew-inline`; `full-handshake` refuses exactly those tickets.
    func testSChannelRows() {
        let inline = TicketDecision.decide(key: .stale, stale: .renewInline, tls13: false, tickets: 1)
        XCTAssertEqual(inline.callback.rawValue, 2)
        XCTAssertEqual(inline.outcome, .resumedRenewedInline)
        let full = TicketDecision.decide(key: .stale, stale: .fullHandshake, tls13: false, tickets: 1)
        XCTAssertEqual(full.callback.rawValue, 0)
        XCTAssertEqual(full.outcome, .staleForcedFull)
        for stale in StaleTicketAction.allCases {
            XCTAssertEqual(
                TicketDecision.decide(key: .current, stale: stale, tls13: false, tickets: 1).callback,
                .resume
            )
        }
    }

    /// `TicketOutcome.final`: every recorded outcome × resumed × session-cache hit.
    func testFinalOutcome() {
        let ticketResumptions: Set<TicketOutcome> = [.resumed, .resumedRenewedInline, .staleResumedNoRenewal]
        for recorded in TicketOutcome.allCases {
            for resumed in [false, true] {
                for hit in [false, true] {
                    let f = TicketOutcome.final(recorded: recorded, resumed: resumed, sessionCacheHit: hit)
                    let want: TicketOutcome
                    if resumed && hit {
                        want = .resumedSessionID
                    } else if ticketResumptions.contains(recorded) {
                        want = resumed ? recorded : .full
                    } else {
                        want = resumed ? .resumed : recorded
                    }
                    XCTAssertEqual(f, want, "\(recorded) resumed=\(resumed) hit=\(hit)")
                }
            }
        }
    }
}
