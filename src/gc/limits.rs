//! The content policy at push time: immutable tags, and quotas with the usage they count.

use bytes::Bytes;

use super::Usage;
use super::policy::RepoRule;
use crate::error::{Code, RegistryError};
use crate::handlers::store_err;
use crate::keys;
use crate::links::TagLink;
use crate::names::{RepoName, Tag};
use crate::registry::{Ctx, Result};
use crate::storage::{ListOptions, PutMode, Storage, StorageError};

/// Compare-and-set attempts at a usage document before leaving the count to the next pass.
const USAGE_TRIES: usize = 8;

fn denied(message: String) -> RegistryError {
    RegistryError::new(Code::Denied, message)
}

/// `1.5 GiB`, `300 KiB`, `12 B`: one decimal, rounded half to even as `{:.1}` would. In
/// integers: float formatting with a precision is ~5 KB of the Worker's wasm.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut unit = 0;
    while unit + 1 < UNITS.len() && bytes >> (10 * unit) >= 1024 {
        unit += 1;
    }
    if unit == 0 {
        return format!("{bytes} B");
    }
    let (scaled, whole) = (u128::from(bytes) * 10, 1u128 << (10 * unit));
    let (mut tenths, rest) = (scaled / whole, scaled % whole);
    if 2 * rest > whole || (2 * rest == whole && tenths % 2 == 1) {
        tenths += 1;
    }
    format!("{}.{} {}", tenths / 10, tenths % 10, UNITS[unit])
}

impl<S: Storage> Ctx<'_, S> {
    /// Refuse to move or delete an immutable tag. `to` is the digest a push would set it to
    /// (`None` for a delete); setting it to the digest it already has is fine.
    pub(crate) async fn check_immutable(
        &self,
        name: &RepoName,
        tag: &Tag,
        to: Option<&crate::digest::Digest>,
    ) -> Result<()> {
        let Some(rule) = self.policy.and_then(|p| p.immutable(name, tag)) else {
            return Ok(());
        };
        let current = match self.store.meta_get(&keys::tag(name, tag)).await {
            Ok(s) => TagLink::parse(&s.value).map(|l| l.digest),
            Err(StorageError::NotFound) => None,
            Err(e) => return Err(store_err(e)),
        };
        match (current, to) {
            (None, Some(_)) => Ok(()),
            (Some(have), Some(want)) if have == *want => Ok(()),
            (None, None) => Ok(()),
            (Some(have), _) => Err(denied(format!(
                "tag {tag} of {name} is immutable ([[repos]] rule {}): it names {have} and \
                 cannot be moved or deleted",
                rule.index
            ))),
        }
    }

    /// Whether `tag` of `name` is immutable: then it is written only if absent (the first of
    /// two racing pushes wins; the other is checked against it).
    pub(crate) fn is_immutable(&self, name: &RepoName, tag: &Tag) -> bool {
        self.policy.and_then(|p| p.immutable(name, tag)).is_some()
    }

    /// Refuse a push that would bring `name` past a quota by `extra` bytes.
    pub(crate) async fn check_quota(&self, name: &RepoName, extra: u64) -> Result<()> {
        let Some(policy) = self.policy else {
            return Ok(());
        };
        for rule in policy.rules_for(name).filter(|r| r.quota.is_some()) {
            let quota = rule.quota.unwrap_or(u64::MAX);
            let used = self.usage_of(rule).await?;
            if used.saturating_add(extra) > quota {
                return Err(denied(format!(
                    "quota exceeded: {} may hold {} ([[repos]] rule {}, {}); {} is in use and \
                     this push needs {} more",
                    name,
                    human(quota),
                    rule.index,
                    rule.repos.join(", "),
                    human(used),
                    human(extra)
                )));
            }
        }
        Ok(())
    }

    /// What the repositories a rule matches hold together, as counted.
    pub(crate) async fn usage_of(&self, rule: &RepoRule) -> Result<u64> {
        let mut names = std::collections::BTreeSet::new();
        for prefix in rule.prefixes() {
            // A glob without wildcards names one repository, which `after` would skip.
            if let Ok(n) = prefix.parse::<RepoName>()
                && rule.matches(&n)
            {
                names.insert(n);
            }
            // The catalog (repositories with manifests) and the repositories with links both
            // key by name, in order: names starting with the glob's literal start follow it.
            for list in [keys::CATALOG, keys::LINKED] {
                let mut after = prefix.to_owned();
                'pages: loop {
                    let page = self
                        .store
                        .meta_list(
                            list,
                            ListOptions {
                                after: Some(after.as_str()).filter(|a| !a.is_empty()),
                                limit: Some(1000),
                            },
                        )
                        .await
                        .map_err(store_err)?;
                    for repo in &page {
                        if !repo.starts_with(prefix) {
                            break 'pages;
                        }
                        if let Ok(n) = repo.parse::<RepoName>()
                            && rule.matches(&n)
                        {
                            names.insert(n);
                        }
                    }
                    match page.last() {
                        Some(last) if page.len() == 1000 => after = last.clone(),
                        _ => break,
                    }
                }
            }
        }
        let mut total = 0u64;
        for n in &names {
            total = total.saturating_add(self.usage(n).await?.bytes);
        }
        Ok(total)
    }

    pub(crate) async fn usage(&self, name: &RepoName) -> Result<Usage> {
        match self.store.meta_get(&keys::usage(name)).await {
            Ok(s) => Ok(serde_json::from_slice(&s.value).unwrap_or_default()),
            Err(StorageError::NotFound) => Ok(Usage::default()),
            Err(e) => Err(store_err(e)),
        }
    }

    /// Count `bytes` more for `name`, between passes (a pass counts afresh). Best effort: under
    /// heavy contention the next pass's count stands.
    pub(crate) async fn add_usage(&self, name: &RepoName, bytes: u64) -> Result<()> {
        if bytes == 0 {
            return Ok(());
        }
        let key = keys::usage(name);
        for _ in 0..USAGE_TRIES {
            let (mut usage, mode) = match self.store.meta_get(&key).await {
                Ok(s) => (
                    serde_json::from_slice::<Usage>(&s.value).unwrap_or_default(),
                    PutMode::Update(s.version),
                ),
                Err(StorageError::NotFound) => (Usage::default(), PutMode::Create),
                Err(e) => return Err(store_err(e)),
            };
            usage.bytes = usage.bytes.saturating_add(bytes);
            let value = Bytes::from(serde_json::to_vec(&usage).unwrap_or_default());
            match self.store.meta_put(&key, value, mode).await {
                Ok(_) => return Ok(()),
                Err(StorageError::Precondition | StorageError::AlreadyExists) => continue,
                Err(e) => return Err(store_err(e)),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::human;

    /// What it printed with `f64` and `{:.1}`, which it must go on printing.
    fn as_float(bytes: u64) -> String {
        const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
        let (mut v, mut unit) = (bytes as f64, 0);
        while v >= 1024.0 && unit + 1 < UNITS.len() {
            v /= 1024.0;
            unit += 1;
        }
        if unit == 0 {
            format!("{bytes} B")
        } else {
            format!("{v:.1} {}", UNITS[unit])
        }
    }

    #[test]
    fn human_sizes_as_before() {
        assert_eq!(human(12), "12 B");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(300 << 10), "300.0 KiB");
        assert_eq!(human(3 << 40), "3.0 TiB");
        assert_eq!(human(5000 << 40), "5000.0 TiB");
        let mut cases: Vec<u64> = (0..5000).collect();
        for unit in 1..5 {
            let base = 1u64 << (10 * unit);
            for k in [1, 2, 3, 10, 100, 1000, 1023, 1024] {
                for d in [-3i64, -2, -1, 0, 1, 2, 3] {
                    cases.push((k * base).saturating_add_signed(d * (base as i64 / 20)));
                    cases.push((k * base).saturating_add_signed(d));
                }
                // Halfway between two tenths: ties go to the even tenth.
                cases.push(k * base + base / 20);
                cases.push(k * base + 3 * base / 20);
            }
        }
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            cases.push(x >> (11 + x % 40));
        }
        for b in cases {
            assert_eq!(human(b), as_float(b), "{b}");
        }
    }
}
