//! The TOML the policy files are written in, without the `toml` crate (a fifth of the Worker's
//! wasm): strings (all four kinds), decimal integers, booleans, arrays, inline tables, tables,
//! arrays of tables, dotted and quoted keys, comments, with TOML 1.1's rules. Floats, dates and
//! times, and hex, octal or binary integers are outside it: the parser refuses them, naming the
//! line, as it does any malformed text, so a policy it cannot read never loads.
//!
//! [`parse`] gives a [`Table`]; [`Fields`] reads one into a struct, refusing keys it was not
//! asked for.

mod fields;
mod parse;
#[cfg(test)]
mod tests;

pub use fields::Fields;
pub use parse::parse;

/// What is wrong, and on which line (1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub line: usize,
    pub message: String,
}

impl Error {
    pub(crate) fn new(line: usize, message: impl Into<String>) -> Error {
        Error {
            line,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for Error {}

/// A value and the line it starts on.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub line: usize,
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    String(String),
    Integer(i64),
    Boolean(bool),
    /// `[a, b]`.
    Array(Vec<Item>),
    /// What `[[name]]` headers made: tables, never empty.
    Tables(Vec<Item>),
    Table(Table),
}

impl Value {
    /// What it is, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::String(_) => "a string",
            Value::Integer(_) => "an integer",
            Value::Boolean(_) => "a boolean",
            Value::Array(_) | Value::Tables(_) => "an array",
            Value::Table(_) => "a table",
        }
    }
}

/// Keys in the order they were written.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub(crate) entries: Vec<(String, Item)>,
    origin: Origin,
}

/// How a table came to be: TOML lets some be added to later, and not others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    Root,
    /// Named on the way to a header's table (`a` of `[a.b]`): a header of its own may follow.
    Implicit,
    Header,
    /// Made by a dotted key (`a` of `a.b = 1`): more dotted keys may add to it.
    Dotted,
    /// `{ ... }`: complete as written.
    Inline,
}

impl Table {
    fn new(origin: Origin) -> Table {
        Table {
            entries: Vec::new(),
            origin,
        }
    }

    pub fn get(&self, key: &str) -> Option<&Item> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Item)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    fn position(&self, key: &str) -> Option<usize> {
        self.entries.iter().position(|(k, _)| k == key)
    }
}
