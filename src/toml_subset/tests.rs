//! The parser against the `toml` crate (a dev-dependency): what it accepts, it reads as `toml`
//! does; what it refuses, it refuses with the line.

use serde_json::{Value as Json, json};

use super::{Error, Fields, Table, Value, parse};

fn to_json(v: &Value) -> Json {
    match v {
        Value::String(s) => Json::String(s.clone()),
        Value::Integer(n) => json!(n),
        Value::Boolean(b) => Json::Bool(*b),
        Value::Array(items) | Value::Tables(items) => {
            Json::Array(items.iter().map(|i| to_json(&i.value)).collect())
        }
        Value::Table(t) => table_json(t),
    }
}

fn table_json(t: &Table) -> Json {
    Json::Object(
        t.iter()
            .map(|(k, i)| (k.to_owned(), to_json(&i.value)))
            .collect(),
    )
}

/// What the `toml` crate reads from `text`, if it reads it.
fn reference(text: &str) -> Option<Json> {
    let table: toml::Table = toml::from_str(text).ok()?;
    Some(serde_json::to_value(table).expect("toml values are JSON"))
}

fn accepts(text: &str) -> Json {
    let ours = parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
    let ours = table_json(&ours);
    assert_eq!(Some(&ours), reference(text).as_ref(), "{text:?}");
    ours
}

fn refuses(text: &str, line: usize, says: &str) {
    let err = parse(text).expect_err(text);
    assert_eq!(err.line, line, "{text:?}: {err}");
    assert!(err.message.contains(says), "{text:?}: {err}");
}

/// Every kind of thing the policy files use, and the TOML around it they may be written in.
const VALID: &[&str] = &[
    "",
    "\n\n# only a comment\n",
    "a = 1",
    "a = \"x\" # comment\nb = 'y'\r\nc = true\nd = false\n",
    "n = [1, -2, +3, 0, 1_000, 9223372036854775807, -9223372036854775808]",
    "s = \"tab\\tquote\\\"back\\\\slash\\u00e9\\U0001F600\\n\\r\\b\\f\\e\\x41\"",
    "s = 'C:\\path\\with\\backslashes' \t",
    "s = \"\"\"\nfirst\nsecond\"\"\"",
    "s = \"\"\"one \\\n    two \\\n\n   three\"\"\"",
    "s = \"\"\"quotes \"\" inside and at the end\"\"\"\"\"",
    "s = '''\nraw \\n ''quoted''\n'''",
    "s = '''x'''''",
    "s = \"\"\"\r\ncrlf\r\nlines\"\"\"",
    "s = \"caf\u{e9} \u{1F600}\"",
    "a = []\nb = [ ]\nc = [\n  1, # one\n  2,\n]\nd = [[1], ['x', \"y\"], []]",
    "t = {}\nu = { a = 1, b.c = \"d\", 'e f' = [true] }",
    "t = {\n  a = 1, # TOML 1.1\n  b = 2,\n}",
    "rules = [{ repos = [\"pub/**\"], who = [\"anonymous\"], actions = [\"pull\"] },\n\
     { repos = [\"team/**\"], who = [\"group:dev\"], actions = [\"pull\", \"push\"] }]",
    "a.b.c = 1\na.b.d = 2\na.e = 3",
    "\"quoted key\" = 1\n'literal key' = 2\n\"\" = 3\n\"a.b\" = 4\nbare-key_9 = 5",
    "[users.alice]\npassword = \"p\"\ngroups = [\"dev\"]\n[users.\"bob@example.com\"]\nread_only = true",
    "[ users . 'carol' ]\nx = 1",
    "[a.b]\nx = 1\n[a]\ny = 2",
    "[a]\nb.c = 1\n[a.b.d]\ne = 2",
    "[[rules]]\nrepos = [\"**\"]\n[[rules]]\nrepos = [\"x\"]\n[rules.sub]\nk = 1\n[[rules]]",
    "[[a.b]]\nx = 1\n[[a.b]]\nx = 2\n[a.c]\ny = 3",
    "default = \"anonymous-pull\"   # the preset\ncatalog = [\"alice\"]\n\n\
     [[keys]]\nkid = \"ext\"\npublic_key = \"\"\"-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----\"\"\"\n\
     [gc]\nuntagged = \"7d\"\n[[repos]]\nmatch = [\"team-a/**\"]\nkeep_newest = 10\nquota = 1024",
];

#[test]
fn reads_what_toml_reads() {
    for text in VALID {
        accepts(text);
    }
    let v = accepts("[users.alice]\ngroups = [\"a\", \"b\"]\n[[rules]]\nrepos = [\"x\"]");
    assert_eq!(
        v,
        json!({"users": {"alice": {"groups": ["a", "b"]}}, "rules": [{"repos": ["x"]}]})
    );
}

#[test]
fn refuses_with_the_line() {
    // TOML, but not what policy files hold.
    let outside: &[(&str, usize)] = &[
        ("a = 1.5", 1),
        ("\n\na = 1e3", 3),
        ("a = [\n1,\n-0.0]", 3),
        ("a = 0x1F", 1),
        ("a = 0o17", 1),
        ("a = 0b1", 1),
        ("a = inf", 1),
        ("a = -nan", 1),
        ("a = 1979-05-27", 1),
        ("a = 1979-05-27T07:32:00Z", 1),
        ("a = 1979-05-27 07:32:00", 1),
        ("a = 07:32:00", 1),
    ];
    for (text, line) in outside {
        assert!(reference(text).is_some(), "toml refuses {text:?}");
        refuses(
            text,
            *line,
            "floats, dates, times and hex, octal or binary numbers",
        );
    }
    // Not TOML at all.
    let cases: &[(&str, usize, &str)] = &[
        ("a = 01", 1, "invalid integer"),
        ("a = 1__0", 1, "invalid integer"),
        ("a = 1_", 1, "invalid integer"),
        ("a = +", 1, "invalid integer"),
        ("a = 9223372036854775808", 1, "out of range"),
        ("a = 1\na = 2", 2, "already defined on line 1"),
        ("a = 1\n\n[a]", 3, "already defined on line 1"),
        ("[a]\n[a]", 2, "already defined on line 1"),
        ("[a]\nb = 1\n[a.b]", 3, "already defined"),
        ("a = [1]\n[[a]]", 2, "already defined"),
        ("[[a]]\n[a]", 2, "already defined"),
        ("a.b = 1\n[a]", 2, "already defined"),
        ("[a.b.c]\nz = 9\n[a]\nb.c.t = 9", 4, "dotted key cannot add"),
        ("a = {b = 1}\n[a.c]", 2, "not as a table"),
        ("a = {b = 1}\na.c = 2", 2, "dotted key cannot add"),
        ("a = {b = 1, b = 2}", 1, "already defined"),
        ("a = \"open", 1, "unclosed string"),
        ("a = \"two\nlines\"", 1, "unclosed string"),
        ("a = 'two\nlines'", 1, "unclosed string"),
        ("x = 1\na = \"\"\"never\nclosed", 2, "unclosed multi-line"),
        ("a = '''never", 1, "unclosed multi-line"),
        ("a = \"\\q\"", 1, "unknown escape"),
        ("a = \"\\u00\"", 1, "hex digits"),
        ("a = \"\\uD800\"", 1, "Unicode scalar"),
        ("a = \"\\\"", 1, "unclosed string"),
        ("a = \"x\\\ny\"", 1, "end of the line"),
        ("a = \"bell\u{7}\"", 1, "control character"),
        ("a = '''nul\u{0}'''", 1, "control character"),
        ("a = 1 # bell\u{7}", 1, "control character"),
        ("a = 1\rb = 2", 1, "carriage return"),
        ("a = [1,\n2,\n3", 1, "unclosed array"),
        ("a = [1\n2]", 2, "expected `,` or `]`"),
        ("a = [,]", 1, "expected a value"),
        ("a = {b = 1", 1, "unclosed inline table"),
        ("a = {b = 1 c = 2}", 1, "expected `,` or `}`"),
        ("a = {,}", 1, "expected a key"),
        ("a = 1 b = 2", 1, "end of the line"),
        ("a =", 1, "expected a value"),
        ("a = \n1", 1, "expected a value"),
        ("a 1", 1, "expected `=`"),
        ("= 1", 1, "expected a key"),
        ("a. = 1", 1, "expected a key"),
        ("\"\"\"a\"\"\" = 1", 1, "multi-line"),
        ("[a", 1, "expected `]`"),
        ("[[a]", 1, "expected `]]`"),
        ("[]", 1, "expected a key"),
        ("[a] b = 1", 1, "end of the line"),
        ("a = truth", 1, "expected a value"),
        ("a = True", 1, "expected a value"),
        ("a = \"\"\"x\"\"\"\"\"\"", 1, "too many quotes"),
    ];
    let unfair: Vec<_> = cases.iter().filter(|c| reference(c.0).is_some()).collect();
    assert!(unfair.is_empty(), "toml reads these: {unfair:?}");
    for (text, line, says) in cases {
        refuses(text, *line, says);
    }
}

#[test]
fn deep_nesting_is_refused_not_a_crash() {
    for open in ["[", "{a="] {
        let text = format!("a = {}", open.repeat(100_000));
        assert!(
            parse(&text)
                .unwrap_err()
                .message
                .contains("nested too deeply")
        );
    }
    accepts(&format!("a = {}{}", "[".repeat(30), "]".repeat(30)));
}

/// A small, seeded generator: the same cases on every run.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// Mangled documents: whatever the parser accepts, `toml` must read the same way; nothing
/// panics.
#[test]
fn mangled_documents_never_read_differently() {
    const PIECES: &[&str] = &[
        "\"",
        "'",
        "\"\"\"",
        "'''",
        "[",
        "]",
        "[[",
        "]]",
        "{",
        "}",
        "=",
        ",",
        ".",
        "#",
        "\n",
        "\r\n",
        "\r",
        "\\",
        "\\u",
        "\\x4",
        " ",
        "\t",
        "a",
        "1",
        "0",
        "-",
        "+",
        "_",
        "e",
        ":",
        "true",
        "x.y",
        "\u{e9}",
        "\u{1F600}",
        "\u{0}",
        "\u{7f}",
        "\u{85}",
    ];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut read, mut refused) = (0, 0);
    for round in 0..20_000 {
        let mut text = VALID[round % VALID.len()].to_owned();
        for _ in 0..1 + rng.below(3) {
            let mut at = rng.below(text.len() + 1);
            while !text.is_char_boundary(at) {
                at -= 1;
            }
            match rng.below(3) {
                0 => text.insert_str(at, PIECES[rng.below(PIECES.len())]),
                1 => {
                    let end = (at + 1 + rng.below(4)).min(text.len());
                    let end = (end..=text.len())
                        .find(|e| text.is_char_boundary(*e))
                        .unwrap_or(at);
                    text.replace_range(at..end, "");
                }
                _ => text.truncate(at),
            }
        }
        match parse(&text) {
            Ok(table) => {
                read += 1;
                assert_eq!(Some(table_json(&table)), reference(&text), "{text:?}");
            }
            Err(Error { line, .. }) => {
                refused += 1;
                assert!(
                    line >= 1 && line <= text.lines().count().max(1) + 1,
                    "{text:?}: line {line}"
                );
            }
        }
    }
    // Both outcomes were exercised.
    assert!(
        read > 1000 && refused > 1000,
        "{read} read, {refused} refused"
    );
}

#[test]
fn fields_read_types_and_refuse_the_rest() {
    let table = parse(
        "name = \"x\"\ncount = 3\nflag = true\nlist = [\"a\", \"b\"]\n\
         [sub]\nk = 1\n[[many]]\nv = 1\n[[many]]\nv = 2\n",
    )
    .unwrap();
    let mut f = Fields::root(&table);
    assert_eq!(f.string("name").unwrap().as_deref(), Some("x"));
    assert_eq!(f.count::<u64>("count").unwrap(), Some(3));
    assert_eq!(f.boolean("flag").unwrap(), Some(true));
    assert_eq!(f.strings("list").unwrap().unwrap(), ["a", "b"]);
    assert_eq!(f.string("absent").unwrap(), None);
    let mut sub = f.table("sub").unwrap().unwrap();
    assert_eq!(sub.count::<usize>("k").unwrap(), Some(1));
    sub.finish().unwrap();
    let many = f.tables("many").unwrap();
    assert_eq!(many.len(), 2);
    for mut m in many {
        m.count::<u64>("v").unwrap();
        m.finish().unwrap();
    }
    f.finish().unwrap();

    // The wrong type, with the line and the table.
    let table = parse("a = 1\n[t]\nb = \"x\"\nc = -1\nd = [1]\n").unwrap();
    let mut f = Fields::root(&table);
    assert_eq!(
        f.string("a").unwrap_err().to_string(),
        "line 1: `a` in the top level: expected a string, found 1"
    );
    let mut t = f.table("t").unwrap().unwrap();
    assert_eq!(t.count::<u64>("b").unwrap_err().line, 3);
    assert_eq!(t.count::<u64>("c").unwrap_err().line, 4);
    assert!(
        t.strings("d")
            .unwrap_err()
            .to_string()
            .contains("line 5: `d` in [t]")
    );
    assert_eq!(
        t.need("e", None::<String>).unwrap_err().to_string(),
        "line 2: [t] needs `e`"
    );

    // A key nobody read.
    let table = parse("known = 1\n\ncolour = \"blue\"\n").unwrap();
    let mut f = Fields::root(&table);
    f.count::<u64>("known").unwrap();
    assert_eq!(
        f.finish().unwrap_err().to_string(),
        "line 3: unknown key `colour` in the top level"
    );
}
