public import ProxyCore

/// Something that produces ticket keys and publishes them into a ``TicketKeyStore``.
///
/// The composition root calls ``tick(now:)`` periodically (e.g. once a second from one control thread), passing
/// the wall-clock time; sources never read the clock themselves.
public protocol TicketKeySource: AnyObject, Sendable {
    /// The store this source publishes into; workers read rings from it.
    var store: TicketKeyStore { get }
    /// Brings the keys up to date for `now` and publishes a new ring if anything changed.
    /// Returns whether a ring was published. On error the previously published ring stays in force.
    @discardableResult
    func tick(now: Timestamp) throws -> Bool
}
