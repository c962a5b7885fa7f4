/// A path to a key or an array element inside a TOML document, e.g. `tickets.rotation`, `certificates[1].key` or
/// `policy[0].match.any[2]`. Elements of arrays and of arrays of tables (`[[policy]]`) are both `.index` components.
public struct TOMLPath: Hashable, Sendable, CustomStringConvertible, ExpressibleByArrayLiteral {
    public enum Component: Hashable, Sendable {
        case key(String)
        case index(Int)
    }

    public var components: [Component]

    public init(_ components: [Component] = []) { self.components = components }
    public init(arrayLiteral elements: String...) { self.components = elements.map { .key($0) } }

    public func appending(_ key: String) -> TOMLPath { TOMLPath(components + [.key(key)]) }
    public func appending(index: Int) -> TOMLPath { TOMLPath(components + [.index(index)]) }
    public var parent: TOMLPath? { components.isEmpty ? nil : TOMLPath(Array(components.dropLast())) }

    /// `tickets.rotation`, `certificates[1].key`; keys that are not bare are quoted.
    public var description: String {
        var out = ""
        for component in components {
            switch component {
            case .index(let i):
                out += "[\(i)]"
            case .key(let k):
                if !out.isEmpty { out += "." }
                let bare = !k.isEmpty && k.unicodeScalars.allSatisfy(TOMLKeyLocator.isBareKeyScalar)
                out += bare ? k : "\"\(k)\""
            }
        }
        return out
    }
}
