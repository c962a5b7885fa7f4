import XCTest

@testable import ProxyTOMLSupport

final class TOMLKeyLocatorTests: XCTestCase {
    private func at(_ locator: TOMLKeyLocator, _ path: TOMLPath) -> String? { locator.position(of: path)?.description }

    func testTablesDottedKeysAndComments() {
        let text = """
            # comment with key = "value" and [table]
            top = 1 # trailing
            a.b.c = "x"

              [tickets]   # header comment
            rotation = "1h"
              "quoted key" = 2
            'literal.key' = 3
            [ policies . headers ]
            ja3="X"
            """
        let l = TOMLKeyLocator(text: text)
        XCTAssertEqual(at(l, ["top"]), "2:1")
        XCTAssertEqual(at(l, ["a"]), "3:1")
        XCTAssertEqual(at(l, ["a", "b"]), "3:3")
        XCTAssertEqual(at(l, ["a", "b", "c"]), "3:5")
        XCTAssertEqual(at(l, ["tickets"]), "5:4")
        XCTAssertEqual(at(l, ["tickets", "rotation"]), "6:1")
        XCTAssertEqual(at(l, ["tickets", "quoted key"]), "7:3")
        XCTAssertEqual(at(l, ["tickets", "literal.key"]), "8:1")
        XCTAssertEqual(at(l, ["policies"]), "9:3")
        XCTAssertEqual(at(l, ["policies", "headers"]), "9:14")
        XCTAssertEqual(at(l, ["policies", "headers", "ja3"]), "10:1")
        XCTAssertNil(l.position(of: ["comment"]))
        XCTAssertNil(l.position(of: ["table"]))
    }

    func testMultiLineStringsAndArraysDoNotConfuseTheScanner() {
        let text = #"""
            s = """
            not = a key
            [not.a.table]
            \""" still inside ""
            """
            lit = '''
            # no comment ''
            x = 1'''
            arr = [
              "a", # comment ]
              [1, 2], { k = "v" },
              'b',
            ]
            after = true
            esc = "quote \" [x] = 1"
            dt = 1979-05-27 07:32:00Z
            last = 1
            """#
        let l = TOMLKeyLocator(text: text)
        XCTAssertEqual(at(l, ["s"]), "1:1")
        XCTAssertEqual(at(l, ["lit"]), "6:1")
        XCTAssertNil(l.position(of: ["not"]))
        XCTAssertNil(l.position(of: ["x"]))
        XCTAssertEqual(at(l, ["arr"]), "9:1")
        XCTAssertEqual(at(l, TOMLPath(arrayLiteral: "arr").appending(index: 0)), "10:3")
        XCTAssertEqual(at(l, TOMLPath(arrayLiteral: "arr").appending(index: 1)), "11:3")
        XCTAssertEqual(at(l, TOMLPath(arrayLiteral: "arr").appending(index: 2)), "11:11")
        XCTAssertEqual(at(l, TOMLPath(arrayLiteral: "arr").appending(index: 2).appending("k")), "11:13")
        XCTAssertEqual(at(l, TOMLPath(arrayLiteral: "arr").appending(index: 3)), "12:3")
        XCTAssertEqual(at(l, ["after"]), "14:1")
        XCTAssertEqual(at(l, ["esc"]), "15:1")
        XCTAssertEqual(at(l, ["dt"]), "16:1")
        XCTAssertEqual(at(l, ["last"]), "17:1")
    }

    func testArraysOfTablesAndInlineTables() {
        let text = """
            [[certificates]]
            cert = "a"
            [[certificates]]
            cert = "b"
              key = "c"
            [[certificates.extra]]
            z = 1
            [tls]
            inline = { x = 1, y.z = { w = 2 } }
            """
        let l = TOMLKeyLocator(text: text)
        let c = TOMLPath(arrayLiteral: "certificates")
        XCTAssertEqual(at(l, c), "1:3")
        XCTAssertEqual(at(l, c.appending(index: 0)), "1:3")
        XCTAssertEqual(at(l, c.appending(index: 0).appending("cert")), "2:1")
        XCTAssertEqual(at(l, c.appending(index: 1)), "3:3")
        XCTAssertEqual(at(l, c.appending(index: 1).appending("key")), "5:3")
        XCTAssertEqual(at(l, c.appending(index: 1).appending("extra").appending(index: 0).appending("z")), "7:1")
        XCTAssertEqual(at(l, ["tls", "inline", "x"]), "9:12")
        XCTAssertEqual(at(l, ["tls", "inline", "y", "z", "w"]), "9:27")
    }

    func testNearestPositionFallsBackToAncestorThenOrigin() {
        let l = TOMLKeyLocator(text: "\n[tickets]\nrotation = 1\n")
        XCTAssertEqual(l.nearestPosition(of: ["tickets", "files"]).description, "2:2")
        XCTAssertEqual(l.nearestPosition(of: ["limits", "max_headers"]).description, "1:1")
    }

    /// What the policy loader points at: values, list elements and the headers that declare tables.
    func testValueAndHeaderAnchors() {
        let text = """
            [[policy]]
            name = "p"
            mode  =  'observe' # comment
            ciphers = ["0x1301",
                       7, { a = 1 }]
              [policy.match]
            any = [{ sni = "present" }]
            [[policy.match.all]]
            grease = "absent"
            [[policy.match.all]]
            dotted.key = true
            """
        let l = TOMLKeyLocator(text: text)
        let p = TOMLPath(arrayLiteral: "policy").appending(index: 0)
        func at(_ path: TOMLPath, _ anchor: TOMLKeyLocator.Anchor) -> String? {
            l.position(of: path, at: anchor)?.description
        }
        XCTAssertEqual(at(["policy"], .header), "1:1")
        XCTAssertEqual(at(["policy"], .value), "1:1")
        XCTAssertEqual(at(["policy"], .key), "1:3")
        XCTAssertEqual(at(p, .header), "1:1")
        XCTAssertEqual(at(p, .value), "1:1")
        XCTAssertEqual(at(p, .key), "1:3")
        XCTAssertEqual(at(p.appending("name"), .value), "2:8")
        XCTAssertNil(at(p.appending("name"), .header))
        XCTAssertEqual(at(p.appending("mode"), .key), "3:1")
        XCTAssertEqual(at(p.appending("mode"), .value), "3:10")
        XCTAssertEqual(at(p.appending("ciphers"), .value), "4:11")
        XCTAssertEqual(at(p.appending("ciphers").appending(index: 0), .value), "4:12")
        XCTAssertEqual(at(p.appending("ciphers").appending(index: 1), .value), "5:12")
        XCTAssertEqual(at(p.appending("ciphers").appending(index: 2), .value), "5:15")
        XCTAssertEqual(at(p.appending("ciphers").appending(index: 2).appending("a"), .value), "5:21")
        XCTAssertEqual(at(p.appending("match"), .header), "6:3")
        XCTAssertEqual(at(p.appending("match"), .key), "6:11")
        XCTAssertEqual(at(p.appending("match").appending("any"), .value), "7:7")
        XCTAssertEqual(at(p.appending("match").appending("any").appending(index: 0), .value), "7:8")
        XCTAssertEqual(at(p.appending("match").appending("any").appending(index: 0).appending("sni"), .key), "7:10")
        let all = p.appending("match").appending("all")
        XCTAssertEqual(at(all, .header), "8:1")
        XCTAssertEqual(at(all.appending(index: 1), .header), "10:1")
        XCTAssertEqual(at(all.appending(index: 1), .key), "10:16")
        XCTAssertEqual(at(all.appending(index: 1).appending("dotted"), .key), "11:1")
        XCTAssertNil(at(all.appending(index: 1).appending("dotted"), .value))
        XCTAssertEqual(at(all.appending(index: 1).appending("dotted").appending("key"), .key), "11:8")
        XCTAssertEqual(at(all.appending(index: 1).appending("dotted").appending("key"), .value), "11:14")
    }

    func testNearestPositionPrefersAnchorsInOrderAtEachLevel() {
        let l = TOMLKeyLocator(text: "[[policy]]\nlist = [1, 2]\nmatch.sni = \"x\"\n")
        let p = TOMLPath(arrayLiteral: "policy").appending(index: 0)
        XCTAssertEqual(l.nearestPosition(of: p.appending("list"), preferring: [.value, .key]).description, "2:8")
        XCTAssertEqual(l.nearestPosition(of: p.appending("list")).description, "2:1")
        XCTAssertEqual(
            l.nearestPosition(of: p.appending("list").appending(index: 5), preferring: [.value, .key]).description,
            "2:8"
        )
        // `match` has a key but no value: the key is the next preference before falling back to the policy.
        XCTAssertEqual(l.nearestPosition(of: p.appending("match"), preferring: [.value, .key]).description, "3:1")
        XCTAssertEqual(l.nearestPosition(of: p.appending("other"), preferring: [.value, .key]).description, "1:1")
        XCTAssertEqual(l.nearestPosition(of: ["elsewhere"], preferring: [.header]).description, "1:1")
    }

    /// Quoted keys are decoded (as TOMLKit reports them) and a date-time's space does not start a key.
    func testEscapedKeysAndDateTimes() {
        let l = TOMLKeyLocator(text: "\"a\\u0062\\\"c\" = 1979-05-27 07:32:00Z\nnext = 1\n")
        XCTAssertEqual(l.position(of: ["ab\"c"])?.description, "1:1")
        XCTAssertEqual(l.position(of: ["ab\"c"], at: .value)?.description, "1:16")
        XCTAssertNil(l.position(of: ["07"]))
        XCTAssertEqual(l.position(of: ["next"])?.description, "2:1")
    }

    func testCRLFLineEndings() {
        let l = TOMLKeyLocator(text: "a = 1\r\n[t]\r\n  b = 2\r\n")
        XCTAssertEqual(at(l, ["t", "b"]), "3:3")
    }

    func testPathDescription() {
        XCTAssertEqual(
            TOMLPath(arrayLiteral: "certificates").appending(index: 1).appending("key").description,
            "certificates[1].key"
        )
        XCTAssertEqual(TOMLPath(arrayLiteral: "a", "b c").description, "a.\"b c\"")
    }
}
