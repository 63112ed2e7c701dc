//! The content policy: what garbage collection may drop beyond unreferenced bytes, retention of
//! tags, immutable tags and quotas, per repository glob (the access policy's globs: `*` within
//! a path segment, `**` across segments, `?` one character).
//!
//! ```toml
//! [gc]
//! untagged = "7d"             # untagged manifests nothing keeps alive go after this long
//! orphan_referrers = true     # referrers whose subject is gone go
//!
//! [[repos]]
//! match = ["team-a/**"]
//! tags = ["*"]                # which tags the two rules below look at (default: all)
//! keep_newest = 10            # the 10 most recently pushed of them always stay
//! max_age = "90d"             # others older than this go
//! untagged = "1d"             # this repository's own untagged time
//! immutable = ["v*"]          # tags that, once set, never move to another digest nor go
//! quota = "10G"               # bytes the matching repositories may hold, together
//! ```
//! Where several `[[repos]]` match a repository, each rule applies: retention drops a tag only
//! if some rule drops it and no rule keeps it; a tag is immutable if any rule says so; every
//! quota that matches must hold.

use crate::auth::policy::glob;
use crate::names::{RepoName, Tag};
use crate::toml_subset::{self, Fields, Value};

#[derive(Debug, Default, Clone)]
pub struct ContentPolicy {
    /// Untagged manifests older than this many seconds go; `None`: never.
    pub untagged: Option<u64>,
    pub orphan_referrers: bool,
    pub rules: Vec<RepoRule>,
}

#[derive(Debug, Clone)]
pub struct RepoRule {
    /// Where it appears in the file (1-based), for messages.
    pub index: usize,
    pub repos: Vec<String>,
    pub tags: Vec<String>,
    pub keep_newest: Option<usize>,
    pub max_age: Option<u64>,
    pub untagged: Option<u64>,
    pub immutable: Vec<String>,
    pub quota: Option<u64>,
}

impl RepoRule {
    pub fn matches(&self, name: &RepoName) -> bool {
        self.repos.iter().any(|g| glob(g, name.as_str()))
    }

    fn selects(&self, tag: &str) -> bool {
        self.tags.is_empty() || self.tags.iter().any(|g| glob(g, tag))
    }

    /// The literal start of its globs: every repository it matches is listed under it.
    pub fn prefixes(&self) -> Vec<&str> {
        self.repos
            .iter()
            .map(|g| {
                let end = g.find(['*', '?']).unwrap_or(g.len());
                &g[..end]
            })
            .collect()
    }
}

/// A tag as retention sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagAge {
    pub tag: String,
    pub pushed: u64,
}

/// Why a policy file does not load.
#[derive(Debug)]
pub struct PolicyFileError(pub String);

impl std::fmt::Display for PolicyFileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PolicyFileError {}

/// A number, or text with a unit.
enum Amount<'a> {
    Number(i64),
    Text(&'a str),
}

impl Amount<'_> {
    /// The amount under `key`, if any.
    fn of<'a>(f: &mut Fields<'a>, key: &str) -> Result<Option<Amount<'a>>, toml_subset::Error> {
        let Some(item) = f.item(key) else {
            return Ok(None);
        };
        match &item.value {
            Value::Integer(n) => Ok(Some(Amount::Number(*n))),
            Value::String(s) => Ok(Some(Amount::Text(s))),
            other => Err(f.invalid(
                key,
                item,
                &format!(
                    "expected a number or text with a unit, found {}",
                    other.kind()
                ),
            )),
        }
    }

    fn read(&self, what: &str, units: &[(&str, u64)]) -> Result<u64, PolicyFileError> {
        match self {
            Amount::Number(n) => {
                u64::try_from(*n).map_err(|_| PolicyFileError(format!("{what}: {n} is negative")))
            }
            Amount::Text(t) => with_unit(t, units)
                .ok_or_else(|| PolicyFileError(format!("{what}: cannot read {t:?}"))),
        }
    }
}

/// One `[[repos]]` as written.
struct RuleFile<'a> {
    repos: Vec<String>,
    tags: Vec<String>,
    keep_newest: Option<usize>,
    max_age: Option<Amount<'a>>,
    untagged: Option<Amount<'a>>,
    immutable: Vec<String>,
    quota: Option<Amount<'a>>,
}

impl<'a> RuleFile<'a> {
    fn read(mut f: Fields<'a>) -> Result<RuleFile<'a>, toml_subset::Error> {
        let rule = RuleFile {
            repos: f.need_strings("match")?,
            tags: f.strings("tags")?.unwrap_or_default(),
            keep_newest: f.count("keep_newest")?,
            max_age: Amount::of(&mut f, "max_age")?,
            untagged: Amount::of(&mut f, "untagged")?,
            immutable: f.strings("immutable")?.unwrap_or_default(),
            quota: Amount::of(&mut f, "quota")?,
        };
        f.finish()?;
        Ok(rule)
    }
}

pub const TIME_UNITS: &[(&str, u64)] = &[("s", 1), ("m", 60), ("h", 3600), ("d", 86400)];
pub const SIZE_UNITS: &[(&str, u64)] = &[
    ("B", 1),
    ("K", 1 << 10),
    ("KiB", 1 << 10),
    ("M", 1 << 20),
    ("MiB", 1 << 20),
    ("G", 1 << 30),
    ("GiB", 1 << 30),
    ("T", 1 << 40),
    ("TiB", 1 << 40),
];

/// `90`, `15m`, `4M`...: a number with an optional unit from `units`.
pub fn with_unit(s: &str, units: &[(&str, u64)]) -> Option<u64> {
    let s = s.trim();
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(digits);
    let n: u64 = n.parse().ok()?;
    let factor = match unit.trim() {
        "" => 1,
        u => units.iter().find(|(name, _)| *name == u)?.1,
    };
    n.checked_mul(factor)
}

impl ContentPolicy {
    pub fn parse(text: &str) -> Result<ContentPolicy, PolicyFileError> {
        let syntax = |e: toml_subset::Error| PolicyFileError(e.to_string());
        let table = toml_subset::parse(text).map_err(syntax)?;
        let mut f = Fields::root(&table);
        let (untagged, orphan_referrers) = match f.table("gc").map_err(syntax)? {
            None => (None, false),
            Some(mut gc) => {
                let untagged = Amount::of(&mut gc, "untagged").map_err(syntax)?;
                let orphans = gc.boolean("orphan_referrers").map_err(syntax)?;
                gc.finish().map_err(syntax)?;
                (untagged, orphans.unwrap_or(false))
            }
        };
        let untagged = untagged
            .map(|a| a.read("[gc] untagged", TIME_UNITS))
            .transpose()?;
        let repos = f.tables("repos").map_err(syntax)?;
        let repos: Vec<RuleFile> = repos
            .into_iter()
            .map(RuleFile::read)
            .collect::<Result<_, _>>()
            .map_err(syntax)?;
        f.finish().map_err(syntax)?;
        let mut rules = Vec::new();
        for (i, r) in repos.into_iter().enumerate() {
            let at = format!("[[repos]] {}", i + 1);
            if r.repos.is_empty() {
                return Err(PolicyFileError(format!(
                    "{at}: match names no repositories"
                )));
            }
            rules.push(RepoRule {
                index: i + 1,
                repos: r.repos,
                tags: r.tags,
                keep_newest: r.keep_newest,
                max_age: r
                    .max_age
                    .as_ref()
                    .map(|a| a.read(&format!("{at} max_age"), TIME_UNITS))
                    .transpose()?,
                untagged: r
                    .untagged
                    .as_ref()
                    .map(|a| a.read(&format!("{at} untagged"), TIME_UNITS))
                    .transpose()?,
                immutable: r.immutable,
                quota: r
                    .quota
                    .as_ref()
                    .map(|a| a.read(&format!("{at} quota"), SIZE_UNITS))
                    .transpose()?,
            });
        }
        Ok(ContentPolicy {
            untagged,
            orphan_referrers,
            rules,
        })
    }

    pub fn rules_for<'a>(&'a self, name: &RepoName) -> impl Iterator<Item = &'a RepoRule> {
        let name = name.clone();
        self.rules.iter().filter(move |r| r.matches(&name))
    }

    /// The rule that makes `tag` of `name` immutable, if one does.
    pub fn immutable(&self, name: &RepoName, tag: &Tag) -> Option<&RepoRule> {
        self.rules_for(name)
            .find(|r| r.immutable.iter().any(|g| glob(g, tag.as_str())))
    }

    /// How long untagged manifests of `name` are kept; `None`: for ever.
    pub fn untagged(&self, name: &RepoName) -> Option<u64> {
        self.rules_for(name)
            .filter_map(|r| r.untagged)
            .max()
            .or(self.untagged)
    }

    /// The tags of `name` that retention drops at `now`, with the rule that drops each.
    /// Immutable tags always stay.
    pub fn expired<'a>(
        &'a self,
        name: &RepoName,
        tags: &[TagAge],
        now: u64,
    ) -> Vec<(TagAge, &'a RepoRule)> {
        let rules: Vec<&RepoRule> = self.rules_for(name).collect();
        let mut kept = std::collections::HashSet::new();
        let mut dropped: Vec<(TagAge, &RepoRule)> = Vec::new();
        for rule in &rules {
            let mut selected: Vec<&TagAge> = tags.iter().filter(|t| rule.selects(&t.tag)).collect();
            // Newest first; ties by name, so the outcome does not depend on listing order.
            selected.sort_by(|a, b| b.pushed.cmp(&a.pushed).then(a.tag.cmp(&b.tag)));
            let keep = rule.keep_newest.unwrap_or(usize::MAX);
            for (i, t) in selected.into_iter().enumerate() {
                let too_many = i >= keep;
                let too_old = rule
                    .max_age
                    .is_some_and(|age| t.pushed.saturating_add(age) < now);
                // With keep_newest alone, beyond the newest go; with max_age too, only the old.
                let drops = match (rule.keep_newest, rule.max_age) {
                    (Some(_), Some(_)) => too_many && too_old,
                    (Some(_), None) => too_many,
                    (None, Some(_)) => too_old,
                    (None, None) => false,
                };
                if drops {
                    dropped.push((t.clone(), rule));
                } else if rule.keep_newest.is_some() || rule.max_age.is_some() {
                    kept.insert(t.tag.clone());
                }
            }
        }
        let immutable = |tag: &str| {
            rules
                .iter()
                .any(|r| r.immutable.iter().any(|g| glob(g, tag)))
        };
        let mut seen = std::collections::HashSet::new();
        dropped.retain(|(t, _)| {
            !kept.contains(&t.tag) && !immutable(&t.tag) && seen.insert(t.tag.clone())
        });
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(tag: &str, pushed: u64) -> TagAge {
        TagAge {
            tag: tag.into(),
            pushed,
        }
    }

    #[test]
    fn parses_and_rejects() {
        let p = ContentPolicy::parse(
            r#"
            [gc]
            untagged = "7d"
            orphan_referrers = true
            [[repos]]
            match = ["team-a/**"]
            keep_newest = 2
            max_age = "1h"
            immutable = ["v*"]
            quota = "10M"
            "#,
        )
        .unwrap();
        assert_eq!(p.untagged, Some(7 * 86400));
        assert!(p.orphan_referrers);
        assert_eq!(p.rules[0].quota, Some(10 << 20));
        assert_eq!(p.rules[0].max_age, Some(3600));
        for bad in [
            "[gc]\nuntagged = \"7x\"",
            "[[repos]]\nmatch = []",
            "[[repos]]\nmatch = [\"a\"]\nquota = \"lots\"",
            "[[repos]]\nmatch = [\"a\"]\nunknown = 1",
        ] {
            assert!(ContentPolicy::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn retention() {
        let p = ContentPolicy::parse(
            r#"
            [[repos]]
            match = ["r"]
            tags = ["dev-*"]
            keep_newest = 2
            [[repos]]
            match = ["r"]
            tags = ["nightly-*"]
            max_age = "100s"
            [[repos]]
            match = ["r"]
            immutable = ["dev-keep"]
            "#,
        )
        .unwrap();
        let name: RepoName = "r".parse().unwrap();
        let tags = [
            t("dev-1", 10),
            t("dev-2", 20),
            t("dev-3", 30),
            t("dev-keep", 5),
            t("nightly-a", 100),
            t("nightly-b", 950),
            t("v1", 1),
        ];
        let mut dropped: Vec<String> = p
            .expired(&name, &tags, 1000)
            .into_iter()
            .map(|(t, _)| t.tag)
            .collect();
        dropped.sort();
        // dev-3 and dev-2 are the newest two; dev-keep is immutable; nightly-a is old.
        assert_eq!(dropped, ["dev-1", "nightly-a"]);
        let other: RepoName = "other".parse().unwrap();
        assert!(p.expired(&other, &tags, 1000).is_empty());
        assert!(p.immutable(&name, &"dev-keep".parse().unwrap()).is_some());
        assert!(p.immutable(&name, &"dev-1".parse().unwrap()).is_none());
    }
}
