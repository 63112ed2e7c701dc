//! Reading a [`Table`] into a struct: typed getters that say which line holds a wrong value,
//! and [`Fields::finish`], which refuses the keys nobody asked for.

use super::{Error, Item, Table, Value};

/// A table being read; `name` says which, in messages (`[users.alice]`, `[[rules]] 2`).
pub struct Fields<'a> {
    table: &'a Table,
    line: usize,
    name: String,
    taken: Vec<bool>,
}

impl<'a> Fields<'a> {
    /// The document's top level.
    pub fn root(table: &'a Table) -> Fields<'a> {
        Fields::new(table, 1, "the top level".into())
    }

    fn new(table: &'a Table, line: usize, name: String) -> Fields<'a> {
        Fields {
            table,
            line,
            name,
            taken: vec![false; table.entries.len()],
        }
    }

    /// The item under `key`, marked as read.
    pub fn item(&mut self, key: &str) -> Option<&'a Item> {
        let i = self.table.position(key)?;
        self.taken[i] = true;
        Some(&self.table.entries[i].1)
    }

    pub fn string(&mut self, key: &str) -> Result<Option<String>, Error> {
        self.typed(key, "a string", |v| match v {
            Value::String(s) => Some(s.clone()),
            _ => None,
        })
    }

    pub fn boolean(&mut self, key: &str) -> Result<Option<bool>, Error> {
        self.typed(key, "true or false", |v| match v {
            Value::Boolean(b) => Some(*b),
            _ => None,
        })
    }

    /// An integer of at least 0 that fits `T`.
    pub fn count<T: TryFrom<i64>>(&mut self, key: &str) -> Result<Option<T>, Error> {
        self.typed(
            key,
            "a whole number of at least 0, not too large",
            |v| match v {
                Value::Integer(n) if *n >= 0 => T::try_from(*n).ok(),
                _ => None,
            },
        )
    }

    /// An array of strings.
    pub fn strings(&mut self, key: &str) -> Result<Option<Vec<String>>, Error> {
        self.typed(key, "an array of strings", |v| match v {
            Value::Array(items) => strings(items),
            _ => None,
        })
    }

    /// A table.
    pub fn table(&mut self, key: &str) -> Result<Option<Fields<'a>>, Error> {
        let name = format!("[{key}]");
        self.typed(key, "a table", |v| match v {
            Value::Table(t) => Some(t),
            _ => None,
        })
        .map(|t| t.map(|t| Fields::new(t, self.line_of(key), name)))
    }

    /// `[[key]]` tables, or an array of inline tables; none if `key` is absent.
    pub fn tables(&mut self, key: &str) -> Result<Vec<Fields<'a>>, Error> {
        let Some(item) = self.item(key) else {
            return Ok(Vec::new());
        };
        let items = match &item.value {
            Value::Array(items) | Value::Tables(items) => items,
            other => return Err(self.wrong(key, item, other, "an array of tables")),
        };
        items
            .iter()
            .enumerate()
            .map(|(i, it)| match &it.value {
                Value::Table(t) => Ok(Fields::new(t, it.line, format!("[[{key}]] {}", i + 1))),
                other => Err(self.wrong(key, it, other, "an array of tables")),
            })
            .collect()
    }

    /// Every key left, for a table whose keys are names (`[users]`): each with its item, and a
    /// name for messages. Reads them all.
    pub fn entries(mut self) -> impl Iterator<Item = (&'a str, &'a Item, String)> {
        self.taken.iter_mut().for_each(|t| *t = true);
        let table = self.table;
        let prefix = self.name.trim_end_matches(']').to_owned();
        table
            .entries
            .iter()
            .map(move |(k, v)| (k.as_str(), v, format!("{prefix}.{k}]")))
    }

    /// A table under a name from [`Fields::entries`].
    pub fn of(item: &'a Item, name: String) -> Result<Fields<'a>, Error> {
        match &item.value {
            Value::Table(t) => Ok(Fields::new(t, item.line, name)),
            other => Err(Error::new(
                item.line,
                format!("{name} must be a table, not {}", other.kind()),
            )),
        }
    }

    /// An array of strings under a name from [`Fields::entries`].
    pub fn strings_of(item: &Item, name: &str) -> Result<Vec<String>, Error> {
        match &item.value {
            Value::Array(items) => strings(items),
            _ => None,
        }
        .ok_or_else(|| Error::new(item.line, format!("{name} must be an array of strings")))
    }

    /// `value` under `key`, which must be there.
    pub fn need<T>(&self, key: &str, value: Option<T>) -> Result<T, Error> {
        value.ok_or_else(|| Error::new(self.line, format!("{} needs `{key}`", self.name)))
    }

    pub fn need_string(&mut self, key: &str) -> Result<String, Error> {
        let v = self.string(key)?;
        self.need(key, v)
    }

    pub fn need_strings(&mut self, key: &str) -> Result<Vec<String>, Error> {
        let v = self.strings(key)?;
        self.need(key, v)
    }

    /// An error about the value under `key`.
    pub fn invalid(&self, key: &str, item: &Item, problem: &str) -> Error {
        Error::new(item.line, format!("`{key}` in {}: {problem}", self.name))
    }

    /// Refuses any key that was not read.
    pub fn finish(self) -> Result<(), Error> {
        match self.taken.iter().position(|t| !t) {
            None => Ok(()),
            Some(i) => {
                let (key, item) = &self.table.entries[i];
                Err(Error::new(
                    item.line,
                    format!("unknown key `{key}` in {}", self.name),
                ))
            }
        }
    }

    fn typed<T>(
        &mut self,
        key: &str,
        expected: &str,
        read: impl FnOnce(&'a Value) -> Option<T>,
    ) -> Result<Option<T>, Error> {
        let Some(item) = self.item(key) else {
            return Ok(None);
        };
        match read(&item.value) {
            Some(v) => Ok(Some(v)),
            None => Err(self.wrong(key, item, &item.value, expected)),
        }
    }

    fn wrong(&self, key: &str, item: &Item, found: &Value, expected: &str) -> Error {
        let found = match found {
            Value::Integer(n) => format!("{n}"),
            other => other.kind().to_owned(),
        };
        self.invalid(key, item, &format!("expected {expected}, found {found}"))
    }

    fn line_of(&self, key: &str) -> usize {
        self.table.get(key).map_or(self.line, |i| i.line)
    }
}

fn strings(items: &[Item]) -> Option<Vec<String>> {
    items
        .iter()
        .map(|i| match &i.value {
            Value::String(s) => Some(s.clone()),
            _ => None,
        })
        .collect()
}
