//! Text to a [`Table`]: one pass over the characters, the line counted as it goes.

use super::{Error, Item, Origin, Table, Value};

/// Arrays and inline tables nested deeper than this are refused, so that hostile text cannot
/// exhaust the stack.
const MAX_DEPTH: usize = 32;

const OUTSIDE: &str = "floats, dates, times and hex, octal or binary numbers are not read here: \
                       write a decimal integer or a string";

/// The document in `text`, or the first thing wrong with it.
pub fn parse(text: &str) -> Result<Table, Error> {
    let mut p = Parser {
        text,
        pos: 0,
        line: 1,
    };
    let mut root = Table::new(Origin::Root);
    // The header path of the table that key/value lines go into.
    let mut current: Vec<String> = Vec::new();
    loop {
        p.skip_blanks();
        match p.peek() {
            None => return Ok(root),
            Some(b'#' | b'\n' | b'\r') => p.end_of_line()?,
            Some(b'[') => {
                let line = p.line;
                let array = p.eat("[[");
                if !array {
                    p.pos += 1;
                }
                p.skip_blanks();
                let key = p.key()?;
                p.skip_blanks();
                let close = if array { "]]" } else { "]" };
                if !p.eat(close) {
                    return Err(p.error(format!("expected `{close}` to close the header")));
                }
                p.end_of_line()?;
                add_header(&mut root, &key, line, array)?;
                current = key;
            }
            Some(_) => {
                let line = p.line;
                let (key, value) = p.key_value(0)?;
                p.end_of_line()?;
                let mut table = &mut root;
                for k in &current {
                    table = descend(table, k, line)?;
                }
                insert(table, &key, Item { line, value })?;
            }
        }
    }
}

/// A `[key]` or `[[key]]` header: the table it opens, made or found.
fn add_header(root: &mut Table, key: &[String], line: usize, array: bool) -> Result<(), Error> {
    let Some((last, path)) = key.split_last() else {
        return Err(Error::new(line, "a header needs a key"));
    };
    let mut table = root;
    for k in path {
        table = descend(table, k, line)?;
    }
    let fresh = || Item {
        line,
        value: Value::Table(Table::new(Origin::Header)),
    };
    let Some(i) = table.position(last) else {
        let value = if array {
            Value::Tables(vec![fresh()])
        } else {
            fresh().value
        };
        table.entries.push((last.clone(), Item { line, value }));
        return Ok(());
    };
    let first = table.entries[i].1.line;
    match &mut table.entries[i].1.value {
        Value::Table(t) if !array && t.origin == Origin::Implicit => {
            t.origin = Origin::Header;
            Ok(())
        }
        Value::Tables(items) if array => {
            items.push(fresh());
            Ok(())
        }
        _ => Err(Error::new(
            line,
            format!("{} is already defined on line {first}", dotted(key)),
        )),
    }
}

/// The table under `key` on a header's path, made if missing; through an array of tables,
/// its last one.
fn descend<'t>(table: &'t mut Table, key: &str, line: usize) -> Result<&'t mut Table, Error> {
    let i = match table.position(key) {
        Some(i) => i,
        None => {
            let value = Value::Table(Table::new(Origin::Implicit));
            table.entries.push((key.to_owned(), Item { line, value }));
            table.entries.len() - 1
        }
    };
    let first = table.entries[i].1.line;
    let found = match &mut table.entries[i].1.value {
        Value::Table(t) if t.origin != Origin::Inline => Some(t),
        Value::Tables(items) => match items.last_mut().map(|i| &mut i.value) {
            Some(Value::Table(t)) => Some(t),
            _ => None,
        },
        _ => None,
    };
    found.ok_or_else(|| {
        Error::new(
            line,
            format!("`{key}` is already defined on line {first}, and not as a table to add to"),
        )
    })
}

/// A key/value pair into `table`; a dotted key makes or extends the tables on its way.
fn insert(table: &mut Table, key: &[String], item: Item) -> Result<(), Error> {
    let line = item.line;
    let Some((last, path)) = key.split_last() else {
        return Err(Error::new(line, "expected a key"));
    };
    let mut table = table;
    for k in path {
        let i = match table.position(k) {
            Some(i) => i,
            None => {
                let value = Value::Table(Table::new(Origin::Dotted));
                table.entries.push((k.clone(), Item { line, value }));
                table.entries.len() - 1
            }
        };
        let first = table.entries[i].1.line;
        table = match &mut table.entries[i].1.value {
            Value::Table(t) if t.origin == Origin::Dotted => t,
            _ => {
                return Err(Error::new(
                    line,
                    format!(
                        "`{k}` is already defined on line {first}: a dotted key cannot add to it"
                    ),
                ));
            }
        };
    }
    if let Some(first) = table.get(last).map(|i| i.line) {
        return Err(Error::new(
            line,
            format!("{} is already defined on line {first}", dotted(key)),
        ));
    }
    table.entries.push((last.clone(), item));
    Ok(())
}

fn dotted(key: &[String]) -> String {
    format!("`{}`", key.join("."))
}

struct Parser<'a> {
    text: &'a str,
    /// Always on a character boundary.
    pos: usize,
    line: usize,
}

impl Parser<'_> {
    fn error(&self, message: impl Into<String>) -> Error {
        Error::new(self.line, message)
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn rest(&self) -> &str {
        &self.text[self.pos..]
    }

    /// The next character, consumed.
    fn next_char(&mut self) -> Option<char> {
        let c = self.rest().chars().next()?;
        self.pos += c.len_utf8();
        if c == '\n' {
            self.line += 1;
        }
        Some(c)
    }

    /// Consumes `s` (which holds no newline) if the text goes on with it.
    fn eat(&mut self, s: &str) -> bool {
        let found = self.rest().starts_with(s);
        if found {
            self.pos += s.len();
        }
        found
    }

    /// What is at the cursor, for messages.
    fn found(&self) -> String {
        match self.rest().chars().next() {
            None => "the end of the text".into(),
            Some('\n' | '\r') => "the end of the line".into(),
            Some(c) => format!("{:?}", c.to_string()),
        }
    }

    fn skip_blanks(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    /// A newline, `\r\n` included, if one is next.
    fn newline(&mut self) -> Result<bool, Error> {
        if self.eat("\r") && self.peek() != Some(b'\n') {
            return Err(self.error("a carriage return must be followed by a newline"));
        }
        Ok(self.peek() == Some(b'\n') && self.next_char().is_some())
    }

    fn comment(&mut self) -> Result<(), Error> {
        if self.peek() != Some(b'#') {
            return Ok(());
        }
        while let Some(c) = self.rest().chars().next() {
            if c == '\n' || c == '\r' {
                break;
            }
            if c.is_control() && c != '\t' {
                return Err(self.error("a control character in a comment"));
            }
            self.next_char();
        }
        Ok(())
    }

    /// Blanks, a comment, then the end of the line or of the text.
    fn end_of_line(&mut self) -> Result<(), Error> {
        self.skip_blanks();
        self.comment()?;
        if self.peek().is_none() || self.newline()? {
            Ok(())
        } else {
            Err(self.error(format!(
                "expected the end of the line, found {}",
                self.found()
            )))
        }
    }

    /// Blanks, comments and newlines (inside arrays and inline tables).
    fn skip_space(&mut self) -> Result<(), Error> {
        loop {
            self.skip_blanks();
            self.comment()?;
            if !self.newline()? {
                return Ok(());
            }
        }
    }

    fn key_value(&mut self, depth: usize) -> Result<(Vec<String>, Value), Error> {
        let key = self.key()?;
        self.skip_blanks();
        if !self.eat("=") {
            return Err(self.error(format!(
                "expected `=` after the key, found {}",
                self.found()
            )));
        }
        self.skip_blanks();
        Ok((key, self.value(depth)?))
    }

    /// `a`, `"a b"`, `'a'`, or several joined by dots.
    fn key(&mut self) -> Result<Vec<String>, Error> {
        let mut parts = vec![self.simple_key()?];
        loop {
            self.skip_blanks();
            if !self.eat(".") {
                return Ok(parts);
            }
            self.skip_blanks();
            parts.push(self.simple_key()?);
        }
    }

    fn simple_key(&mut self) -> Result<String, Error> {
        if self.rest().starts_with("\"\"\"") || self.rest().starts_with("'''") {
            return Err(self.error("a key cannot be a multi-line string"));
        }
        match self.peek() {
            Some(b'"') => self.basic_string(),
            Some(b'\'') => self.literal_string(),
            _ => {
                let start = self.pos;
                while matches!(self.peek(), Some(c) if c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
                {
                    self.pos += 1;
                }
                if self.pos == start {
                    return Err(self.error(format!("expected a key, found {}", self.found())));
                }
                Ok(self.text[start..self.pos].to_owned())
            }
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, Error> {
        if depth > MAX_DEPTH {
            return Err(self.error("arrays and inline tables nested too deeply"));
        }
        let rest = self.rest();
        if rest.starts_with("\"\"\"") {
            return self.multi_line_string('"').map(Value::String);
        }
        if rest.starts_with("'''") {
            return self.multi_line_string('\'').map(Value::String);
        }
        match self.peek() {
            Some(b'"') => self.basic_string().map(Value::String),
            Some(b'\'') => self.literal_string().map(Value::String),
            Some(b'[') => self.array(depth + 1).map(Value::Array),
            Some(b'{') => self.inline_table(depth + 1).map(Value::Table),
            Some(b'0'..=b'9' | b'+' | b'-') => self.integer().map(Value::Integer),
            _ if self.word("true") => Ok(Value::Boolean(true)),
            _ if self.word("false") => Ok(Value::Boolean(false)),
            _ if self.word("inf") || self.word("nan") => Err(self.error(OUTSIDE)),
            _ => Err(self.error(format!(
                "expected a value (a string, an integer, true, false, an array or an inline \
                 table), found {}",
                self.found()
            ))),
        }
    }

    /// Consumes `w` if it is the whole next word.
    fn word(&mut self, w: &str) -> bool {
        let rest = self.rest().as_bytes();
        let whole = rest.starts_with(w.as_bytes())
            && !matches!(rest.get(w.len()), Some(c) if c.is_ascii_alphanumeric() || *c == b'_' || *c == b'-');
        if whole {
            self.pos += w.len();
        }
        whole
    }

    /// A decimal integer: an optional sign, digits with single `_` between them, no leading 0.
    fn integer(&mut self) -> Result<i64, Error> {
        let start = self.pos;
        while matches!(self.peek(), Some(c) if c.is_ascii_alphanumeric() || b"_+-.:".contains(&c)) {
            self.pos += 1;
        }
        let token = &self.text[start..self.pos];
        let unsigned = token.strip_prefix(['+', '-']).unwrap_or(token);
        let outside = unsigned.contains(['.', 'e', 'E', ':', '-', 'x', 'o', 'b'])
            || unsigned == "inf"
            || unsigned == "nan";
        if outside {
            return Err(Error::new(self.line, OUTSIDE));
        }
        let bytes = unsigned.as_bytes();
        let well_formed = bytes.first().is_some_and(u8::is_ascii_digit)
            && bytes.last().is_some_and(u8::is_ascii_digit)
            && bytes.iter().all(|c| c.is_ascii_digit() || *c == b'_')
            && !unsigned.contains("__")
            && !(bytes.len() > 1 && bytes[0] == b'0');
        if !well_formed {
            return Err(Error::new(self.line, format!("invalid integer {token:?}")));
        }
        let digits: String = token.chars().filter(|c| *c != '_').collect();
        digits
            .parse()
            .map_err(|_| Error::new(self.line, format!("integer {token} is out of range")))
    }

    /// `"..."`, on one line, with escapes.
    fn basic_string(&mut self) -> Result<String, Error> {
        self.pos += 1;
        let mut out = String::new();
        loop {
            match self.peek() {
                None | Some(b'\n' | b'\r') => {
                    return Err(self.error("unclosed string: it must end on its line with `\"`"));
                }
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.pos += 1;
                    out.push(self.escape()?);
                }
                Some(_) => {
                    let c = self.next_char().unwrap_or_default();
                    out.push(self.plain(c)?);
                }
            }
        }
    }

    /// `'...'`, on one line, taken as written.
    fn literal_string(&mut self) -> Result<String, Error> {
        self.pos += 1;
        let mut out = String::new();
        loop {
            match self.peek() {
                None | Some(b'\n' | b'\r') => {
                    return Err(self.error("unclosed string: it must end on its line with `'`"));
                }
                Some(b'\'') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(_) => {
                    let c = self.next_char().unwrap_or_default();
                    out.push(self.plain(c)?);
                }
            }
        }
    }

    /// `"""..."""` (with escapes) or `'''...'''`; a newline right after the opening is dropped.
    fn multi_line_string(&mut self, quote: char) -> Result<String, Error> {
        let start = self.line;
        self.pos += 3;
        self.newline()?;
        let mut out = String::new();
        loop {
            let quotes = self.rest().chars().take_while(|c| *c == quote).count();
            if quotes >= 3 {
                if quotes > 5 {
                    return Err(self.error("too many quotes closing a multi-line string"));
                }
                out.extend(std::iter::repeat_n(quote, quotes - 3));
                self.pos += quotes;
                return Ok(out);
            }
            if self.peek() == Some(b'\r') || self.peek() == Some(b'\n') {
                if self.peek() == Some(b'\r') {
                    out.push('\r');
                }
                self.newline()?;
                out.push('\n');
                continue;
            }
            match self.next_char() {
                None => {
                    return Err(Error::new(
                        start,
                        format!(
                            "unclosed multi-line string: no closing {}",
                            quote.to_string().repeat(3)
                        ),
                    ));
                }
                Some('\\') if quote == '"' => {
                    if !self.line_ending_backslash()? {
                        out.push(self.escape()?);
                    }
                }
                Some(c) => out.push(self.plain(c)?),
            }
        }
    }

    /// After a `\` in a multi-line basic string: if only blanks follow on its line, skips them
    /// and all whitespace after.
    fn line_ending_backslash(&mut self) -> Result<bool, Error> {
        let rest = self.rest();
        let blanks = rest.len() - rest.trim_start_matches([' ', '\t']).len();
        if !matches!(rest.as_bytes().get(blanks), Some(b'\n' | b'\r')) {
            return Ok(false);
        }
        self.pos += blanks;
        while self.newline()? {
            self.skip_blanks();
        }
        Ok(true)
    }

    /// A character of a string as written: anything but control characters (tab aside).
    fn plain(&self, c: char) -> Result<char, Error> {
        if c.is_control() && c != '\t' {
            Err(self.error(format!(
                "control character {:?} in a string: write it as an escape",
                c
            )))
        } else {
            Ok(c)
        }
    }

    /// After a `\`: the character it stands for.
    fn escape(&mut self) -> Result<char, Error> {
        if matches!(self.peek(), None | Some(b'\n' | b'\r')) {
            return Err(self.error("a `\\` at the end of the line, outside a \"\"\" string"));
        }
        let c = self.next_char();
        let digits = match c {
            Some('b') => return Ok('\u{8}'),
            Some('t') => return Ok('\t'),
            Some('n') => return Ok('\n'),
            Some('f') => return Ok('\u{c}'),
            Some('r') => return Ok('\r'),
            Some('e') => return Ok('\u{1b}'),
            Some('"') => return Ok('"'),
            Some('\\') => return Ok('\\'),
            Some('x') => 2,
            Some('u') => 4,
            Some('U') => 8,
            _ => {
                return Err(self.error("unknown escape: use \\b \\t \\n \\f \\r \\e \\\" \\\\ \\xHH \\uHHHH or \\UHHHHHHHH"));
            }
        };
        let hex = self
            .rest()
            .get(..digits)
            .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()));
        let code = hex.and_then(|h| u32::from_str_radix(h, 16).ok());
        match code.and_then(char::from_u32) {
            Some(ch) => {
                self.pos += digits;
                Ok(ch)
            }
            None => Err(self.error(format!(
                "\\{} needs {digits} hex digits naming a Unicode scalar value",
                c.unwrap_or(' ')
            ))),
        }
    }

    /// `[a, b, ...]`, over any number of lines.
    fn array(&mut self, depth: usize) -> Result<Vec<Item>, Error> {
        let start = self.line;
        self.pos += 1;
        let mut items = Vec::new();
        loop {
            self.skip_space()?;
            if self.eat("]") {
                return Ok(items);
            }
            let line = self.line;
            let value = self.value(depth)?;
            items.push(Item { line, value });
            self.skip_space()?;
            if self.eat("]") {
                return Ok(items);
            }
            if !self.eat(",") {
                return Err(match self.peek() {
                    None => Error::new(start, "unclosed array: no `]`"),
                    _ => self.error(format!(
                        "expected `,` or `]` in an array, found {}",
                        self.found()
                    )),
                });
            }
        }
    }

    /// `{ a = 1, b = 2 }`.
    fn inline_table(&mut self, depth: usize) -> Result<Table, Error> {
        let start = self.line;
        self.pos += 1;
        let mut table = Table::new(Origin::Inline);
        loop {
            self.skip_space()?;
            if self.eat("}") {
                return Ok(table);
            }
            let line = self.line;
            let (key, value) = self.key_value(depth)?;
            insert(&mut table, &key, Item { line, value })?;
            self.skip_space()?;
            if self.eat("}") {
                return Ok(table);
            }
            if !self.eat(",") {
                return Err(match self.peek() {
                    None => Error::new(start, "unclosed inline table: no `}`"),
                    _ => self.error(format!(
                        "expected `,` or `}}` in an inline table, found {}",
                        self.found()
                    )),
                });
            }
        }
    }
}
