//! The policy file: users, groups, and rules granting actions on repositories.
//!
//! ```toml
//! default = "anonymous-pull"        # or "open", "authenticated", "none" (the default)
//! [users.alice]
//! password = "$pbkdf2-sha256$i=10000$..."   # berth auth hash-password
//! groups = ["team-a"]
//! [users.ci]
//! password = "$pbkdf2-sha256$i=10000$..."
//! read_only = true                  # pull only, whatever the rules say
//! [[rules]]
//! repos = ["team-a/**"]             # `*` within one path segment, `**` across segments
//! who = ["group:team-a", "bob"]     # users, `group:NAME`, `anonymous`, `*` (anyone signed in)
//! actions = ["pull", "push", "delete"]
//! catalog = ["*"]                   # who may list /v2/_catalog (registry:catalog:*)
//! ```

use std::collections::BTreeMap;

use super::password::{HashError, PasswordHash};
use super::scope::Actions;
use crate::toml_subset::{self, Fields};

/// Who is asking, as far as the policy is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subject<'a> {
    Anonymous,
    User(&'a str),
}

#[derive(Debug)]
pub struct Policy {
    users: BTreeMap<String, User>,
    rules: Vec<Rule>,
    catalog: Vec<Who>,
}

#[derive(Debug)]
struct User {
    password: PasswordHash,
    groups: Vec<String>,
    read_only: bool,
}

#[derive(Debug)]
struct Rule {
    repos: Vec<String>,
    who: Vec<Who>,
    actions: Actions,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Who {
    Anonymous,
    AnyUser,
    User(String),
    Group(String),
}

impl Who {
    fn parse(s: &str) -> Who {
        match s {
            "anonymous" => Who::Anonymous,
            "*" => Who::AnyUser,
            _ => match s.strip_prefix("group:") {
                Some(g) => Who::Group(g.into()),
                None => Who::User(s.into()),
            },
        }
    }
}

/// The file's shape; `Auth` reads the token settings from the same file.
#[derive(Debug, Default)]
pub struct PolicyFile {
    pub default: Option<String>,
    pub service: Option<String>,
    pub issuer: Option<String>,
    pub realm: Option<String>,
    pub token_path: Option<String>,
    pub token_ttl: Option<u64>,
    pub clock_skew: Option<u64>,
    pub challenge: Option<String>,
    /// Read by the native server only; the Worker takes its key from a secret.
    pub signing_key_file: Option<String>,
    pub keys: Vec<KeyFile>,
    users: BTreeMap<String, UserFile>,
    groups: BTreeMap<String, Vec<String>>,
    rules: Vec<RuleFile>,
    catalog: Vec<String>,
}

/// A key of an external issuer.
#[derive(Debug)]
pub struct KeyFile {
    pub kid: String,
    pub alg: String,
    pub issuer: String,
    pub public_key: String,
}

#[derive(Debug)]
struct UserFile {
    password: String,
    groups: Vec<String>,
    read_only: bool,
}

#[derive(Debug)]
struct RuleFile {
    repos: Vec<String>,
    who: Vec<String>,
    actions: Vec<String>,
}

impl PolicyFile {
    /// The policy in `text`; any key it does not know is an error.
    pub fn parse(text: &str) -> Result<PolicyFile, toml_subset::Error> {
        let table = toml_subset::parse(text)?;
        let mut f = Fields::root(&table);
        let file = PolicyFile {
            default: f.string("default")?,
            service: f.string("service")?,
            issuer: f.string("issuer")?,
            realm: f.string("realm")?,
            token_path: f.string("token_path")?,
            token_ttl: f.count("token_ttl")?,
            clock_skew: f.count("clock_skew")?,
            challenge: f.string("challenge")?,
            signing_key_file: f.string("signing_key_file")?,
            keys: f
                .tables("keys")?
                .into_iter()
                .map(KeyFile::read)
                .collect::<Result<_, _>>()?,
            users: match f.table("users")? {
                None => BTreeMap::new(),
                Some(users) => users
                    .entries()
                    .map(|(name, item, at)| {
                        Ok((name.to_owned(), UserFile::read(Fields::of(item, at)?)?))
                    })
                    .collect::<Result<_, toml_subset::Error>>()?,
            },
            groups: match f.table("groups")? {
                None => BTreeMap::new(),
                Some(groups) => groups
                    .entries()
                    .map(|(name, item, at)| Ok((name.to_owned(), Fields::strings_of(item, &at)?)))
                    .collect::<Result<_, toml_subset::Error>>()?,
            },
            rules: f
                .tables("rules")?
                .into_iter()
                .map(RuleFile::read)
                .collect::<Result<_, _>>()?,
            catalog: f.strings("catalog")?.unwrap_or_default(),
        };
        f.finish()?;
        Ok(file)
    }
}

impl KeyFile {
    fn read(mut f: Fields<'_>) -> Result<KeyFile, toml_subset::Error> {
        let key = KeyFile {
            kid: f.need_string("kid")?,
            alg: f.need_string("alg")?,
            issuer: f.need_string("issuer")?,
            public_key: f.need_string("public_key")?,
        };
        f.finish()?;
        Ok(key)
    }
}

impl UserFile {
    fn read(mut f: Fields<'_>) -> Result<UserFile, toml_subset::Error> {
        let user = UserFile {
            password: f.need_string("password")?,
            groups: f.strings("groups")?.unwrap_or_default(),
            read_only: f.boolean("read_only")?.unwrap_or(false),
        };
        f.finish()?;
        Ok(user)
    }
}

impl RuleFile {
    fn read(mut f: Fields<'_>) -> Result<RuleFile, toml_subset::Error> {
        let rule = RuleFile {
            repos: f.need_strings("repos")?,
            who: f.need_strings("who")?,
            actions: f.need_strings("actions")?,
        };
        f.finish()?;
        Ok(rule)
    }
}

/// Why a policy file does not load: where in it, and what is wrong.
#[derive(Debug)]
pub enum PolicyError {
    /// Not TOML that berth reads, or not a policy's shape (unknown keys included).
    Syntax(toml_subset::Error),
    /// The token signing key is shorter than `min` bytes.
    ShortKey { min: usize },
    /// A user's password hash cannot be read.
    Hash { user: String, source: HashError },
    /// A setting, user, group, rule or key that cannot be used: `at` names it.
    Invalid { at: String, problem: String },
}

impl PolicyError {
    pub(crate) fn invalid(at: impl Into<String>, problem: impl Into<String>) -> PolicyError {
        PolicyError::Invalid {
            at: at.into(),
            problem: problem.into(),
        }
    }
}

impl std::fmt::Display for PolicyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PolicyError::Syntax(e) => write!(f, "{e}"),
            PolicyError::ShortKey { min } => write!(
                f,
                "the signing key must be at least {min} bytes (berth auth gen-key)"
            ),
            PolicyError::Hash { user, source } => write!(f, "user {user}: {source}"),
            PolicyError::Invalid { at, problem } => write!(f, "{at}: {problem}"),
        }
    }
}

impl std::error::Error for PolicyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PolicyError::Syntax(e) => Some(e),
            PolicyError::Hash { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl Policy {
    pub fn from_file(file: &PolicyFile) -> Result<Policy, PolicyError> {
        let mut users = BTreeMap::new();
        for (name, u) in &file.users {
            if name.is_empty() || name.contains(':') || name == "anonymous" || name == "*" {
                return Err(PolicyError::invalid(
                    format!("user name {name:?}"),
                    "reserved, or has a ':'",
                ));
            }
            let password =
                PasswordHash::parse(&u.password).map_err(|source| PolicyError::Hash {
                    user: name.clone(),
                    source,
                })?;
            let mut groups = u.groups.clone();
            for (g, members) in &file.groups {
                if members.contains(name) {
                    groups.push(g.clone());
                }
            }
            let user = User {
                password,
                groups,
                read_only: u.read_only,
            };
            users.insert(name.clone(), user);
        }
        for (g, members) in &file.groups {
            if let Some(m) = members.iter().find(|m| !users.contains_key(*m)) {
                return Err(PolicyError::invalid(
                    format!("group {g}"),
                    format!("no user {m:?}"),
                ));
            }
        }
        let mut rules = Vec::new();
        let everyone = || vec![Who::Anonymous, Who::AnyUser];
        let (preset, catalog): (Vec<(Vec<Who>, Actions)>, Vec<Who>) =
            match file.default.as_deref().unwrap_or("none") {
                "none" => (vec![], vec![]),
                "open" => (vec![(everyone(), Actions::ALL)], everyone()),
                "anonymous-pull" => (
                    vec![
                        (vec![Who::Anonymous], Actions::PULL),
                        (vec![Who::AnyUser], Actions::ALL),
                    ],
                    vec![Who::AnyUser],
                ),
                "authenticated" => (vec![(vec![Who::AnyUser], Actions::ALL)], vec![Who::AnyUser]),
                other => {
                    return Err(PolicyError::invalid(
                        format!("default = {other:?}"),
                        "expected open, anonymous-pull, authenticated or none",
                    ));
                }
            };
        for (who, actions) in preset {
            rules.push(Rule {
                repos: vec!["**".into()],
                who,
                actions,
            });
        }
        for (i, r) in file.rules.iter().enumerate() {
            let mut actions = Actions::NONE;
            for a in &r.actions {
                actions = actions.union(Actions::parse_one(a).ok_or_else(|| {
                    PolicyError::invalid(format!("rule {}", i + 1), format!("unknown action {a:?}"))
                })?);
            }
            let who: Vec<Who> = r.who.iter().map(|w| Who::parse(w)).collect();
            for w in &who {
                if let Who::User(u) = w
                    && !users.contains_key(u)
                {
                    return Err(PolicyError::invalid(
                        format!("rule {}", i + 1),
                        format!("no user {u:?}"),
                    ));
                }
            }
            rules.push(Rule {
                repos: r.repos.clone(),
                who,
                actions,
            });
        }
        let mut catalog = catalog;
        catalog.extend(file.catalog.iter().map(|w| Who::parse(w)));
        Ok(Policy {
            users,
            rules,
            catalog,
        })
    }

    /// The user, if `password` is theirs.
    pub fn password_hash(&self, user: &str) -> Option<&PasswordHash> {
        self.users.get(user).map(|u| &u.password)
    }

    /// The most rounds any user's hash has (the unknown-user dummy hashes with it, so that
    /// timing does not tell users apart from strangers).
    pub fn max_iterations(&self) -> Option<u32> {
        self.users.values().map(|u| u.password.iterations()).max()
    }

    pub fn has_user(&self, user: &str) -> bool {
        self.users.contains_key(user)
    }

    /// Everything `subject` may do on repository `name`. A signed-in user may do whatever
    /// anonymous callers may, and more.
    pub fn actions(&self, subject: Subject<'_>, name: &str) -> Actions {
        let granted = self
            .rules
            .iter()
            .filter(|r| r.repos.iter().any(|p| glob(p, name)))
            .filter(|r| r.who.iter().any(|w| self.matches(w, subject)))
            .fold(Actions::NONE, |a, r| a.union(r.actions));
        match subject {
            Subject::User(u) if self.users.get(u).is_some_and(|u| u.read_only) => {
                granted.intersect(Actions::PULL)
            }
            _ => granted,
        }
    }

    pub fn catalog(&self, subject: Subject<'_>) -> bool {
        self.catalog.iter().any(|w| self.matches(w, subject))
    }

    fn matches(&self, who: &Who, subject: Subject<'_>) -> bool {
        match (who, subject) {
            (Who::Anonymous, _) => true,
            (_, Subject::Anonymous) => false,
            (Who::AnyUser, Subject::User(u)) => self.users.contains_key(u),
            (Who::User(name), Subject::User(u)) => name == u,
            (Who::Group(g), Subject::User(u)) => {
                self.users.get(u).is_some_and(|u| u.groups.contains(g))
            }
        }
    }
}

/// Glob match: `*` is any run of characters but `/`, `**` any run at all, `?` one character
/// but `/`; anything else matches itself.
pub fn glob(pattern: &str, name: &str) -> bool {
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    // Memoised on (pattern offset, name offset): `**a**a**a**b` on a long name would otherwise
    // backtrack exponentially. At most (|p|+1)(|n|+1) states, each settled once.
    let mut memo = vec![None; (p.len() + 1) * (n.len() + 1)];
    glob_at(p, n, 0, 0, &mut memo)
}

fn glob_at(p: &[u8], n: &[u8], i: usize, j: usize, memo: &mut [Option<bool>]) -> bool {
    let slot = i * (n.len() + 1) + j;
    if let Some(known) = memo[slot] {
        return known;
    }
    let (pr, nr) = (&p[i..], &n[j..]);
    let found = match pr {
        [] => nr.is_empty(),
        [b'*', b'*', ..] => (j..=n.len()).any(|k| glob_at(p, n, i + 2, k, memo)),
        [b'*', ..] => {
            let seg = nr.iter().position(|&c| c == b'/').unwrap_or(nr.len());
            (j..=j + seg).any(|k| glob_at(p, n, i + 1, k, memo))
        }
        [b'?', ..] => matches!(nr, [c, ..] if *c != b'/') && glob_at(p, n, i + 1, j + 1, memo),
        [c, ..] => matches!(nr, [d, ..] if c == d) && glob_at(p, n, i + 1, j + 1, memo),
    };
    memo[slot] = Some(found);
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        let cases = [
            ("**", "a", true),
            ("**", "a/b/c", true),
            ("*", "a", true),
            ("*", "a/b", false),
            ("team-a/**", "team-a/x", true),
            ("team-a/**", "team-a/x/y", true),
            ("team-a/**", "team-a", false),
            ("team-a/**", "team-ab/x", false),
            ("team-a/*", "team-a/x/y", false),
            ("*/base", "lib/base", true),
            ("*/base", "lib/x/base", false),
            ("**/base", "lib/x/base", true),
            ("app-?", "app-1", true),
            ("app-?", "app-12", false),
            ("exact", "exact", true),
            ("exact", "exactly", false),
            ("", "", true),
        ];
        // Would backtrack for ages without the memo.
        let long = "a".repeat(200);
        assert!(!glob("**a**a**a**a**a**a**b", &long));
        assert!(!glob("*a*a*a*a*a*a*a*a*b", &long));
        for (p, n, want) in cases {
            assert_eq!(glob(p, n), want, "{p} ~ {n}");
        }
    }

    const HASH: &str = "$pbkdf2-sha256$i=1000$MDEyMzQ1Njc4OWFiY2RlZg$\
                        /X9S2Mwm1REvqIvFiD2Q4z8UsKrbhgi7qZ2jzSKV4Wc";

    fn policy(extra: &str) -> Result<Policy, PolicyError> {
        let text = format!(
            "{extra}\n[users.alice]\npassword = \"{HASH}\"\ngroups = [\"dev\"]\n\
             [users.bob]\npassword = \"{HASH}\"\n[users.ci]\npassword = \"{HASH}\"\nread_only = true\n"
        );
        let file = PolicyFile::parse(&text).map_err(PolicyError::Syntax)?;
        Policy::from_file(&file)
    }

    #[test]
    fn grants() {
        use Subject::*;
        let p = policy(
            "catalog = [\"alice\"]\n\
             rules = [{ repos = [\"pub/**\"], who = [\"anonymous\"], actions = [\"pull\"] },\n\
                      { repos = [\"team/**\"], who = [\"group:dev\"], actions = [\"pull\", \"push\"] },\n\
                      { repos = [\"**\"], who = [\"ci\"], actions = [\"*\"] },\n\
                      { repos = [\"team/x\"], who = [\"bob\"], actions = [\"delete\"] }]",
        )
        .unwrap();
        let pp = Actions::PULL.union(Actions::PUSH);
        let cases = [
            (Anonymous, "pub/a", Actions::PULL),
            (Anonymous, "team/a", Actions::NONE),
            (User("alice"), "pub/a", Actions::PULL),
            (User("alice"), "team/a", pp),
            (User("bob"), "team/a", Actions::NONE),
            (User("bob"), "team/x", Actions::DELETE),
            (User("ci"), "team/a", Actions::PULL),
            (User("nobody"), "team/a", Actions::NONE),
            (User("nobody"), "pub/a", Actions::PULL),
        ];
        for (who, name, want) in cases {
            assert_eq!(p.actions(who, name), want, "{who:?} on {name}");
        }
        assert!(p.catalog(User("alice")));
        assert!(!p.catalog(User("bob")));
        assert!(!p.catalog(Anonymous));
    }

    #[test]
    fn presets() {
        use Subject::*;
        let p = policy("default = \"open\"").unwrap();
        assert_eq!(p.actions(Anonymous, "x/y"), Actions::ALL);
        assert!(p.catalog(Anonymous));
        let p = policy("default = \"anonymous-pull\"").unwrap();
        assert_eq!(p.actions(Anonymous, "x"), Actions::PULL);
        assert_eq!(p.actions(User("bob"), "x"), Actions::ALL);
        assert_eq!(p.actions(User("ci"), "x"), Actions::PULL);
        assert!(!p.catalog(Anonymous) && p.catalog(User("bob")));
        let p = policy("default = \"authenticated\"").unwrap();
        assert_eq!(p.actions(Anonymous, "x"), Actions::NONE);
        assert_eq!(p.actions(User("alice"), "x"), Actions::ALL);
        let p = policy("").unwrap();
        assert_eq!(p.actions(User("alice"), "x"), Actions::NONE);
    }

    #[test]
    fn bad_files() {
        for bad in [
            "default = \"sometimes\"",
            "rules = [{ repos = [\"**\"], who = [\"carol\"], actions = [\"pull\"] }]",
            "rules = [{ repos = [\"**\"], who = [\"*\"], actions = [\"fly\"] }]",
            "[groups]\nops = [\"carol\"]",
            "colour = \"blue\"",
        ] {
            assert!(policy(bad).is_err(), "{bad}");
        }
        let file = PolicyFile::parse("[users.x]\npassword = \"plain text\"\n").unwrap();
        assert!(Policy::from_file(&file).is_err());
    }
}
