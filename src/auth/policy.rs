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

use serde::Deserialize;

use super::password::PasswordHash;
use super::scope::Actions;

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
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
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
    #[serde(default)]
    pub keys: Vec<KeyFile>,
    #[serde(default)]
    users: BTreeMap<String, UserFile>,
    #[serde(default)]
    groups: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    rules: Vec<RuleFile>,
    #[serde(default)]
    catalog: Vec<String>,
}

/// A key of an external issuer.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct KeyFile {
    pub kid: String,
    pub alg: String,
    pub issuer: String,
    pub public_key: String,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct UserFile {
    password: String,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    read_only: bool,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    repos: Vec<String>,
    who: Vec<String>,
    actions: Vec<String>,
}

impl Policy {
    pub fn from_file(file: &PolicyFile) -> Result<Policy, String> {
        let mut users = BTreeMap::new();
        for (name, u) in &file.users {
            if name.is_empty() || name.contains(':') || name == "anonymous" || name == "*" {
                return Err(format!("user name {name:?} is reserved or has a ':'"));
            }
            let password =
                PasswordHash::parse(&u.password).map_err(|e| format!("user {name}: {e}"))?;
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
                return Err(format!("group {g}: no user {m:?}"));
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
                    return Err(format!(
                        "default = {other:?}: expected open, anonymous-pull, authenticated or none"
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
                actions = actions.union(
                    Actions::parse_one(a)
                        .ok_or_else(|| format!("rule {}: unknown action {a:?}", i + 1))?,
                );
            }
            let who: Vec<Who> = r.who.iter().map(|w| Who::parse(w)).collect();
            for w in &who {
                if let Who::User(u) = w
                    && !users.contains_key(u)
                {
                    return Err(format!("rule {}: no user {u:?}", i + 1));
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
    glob_at(p, n)
}

fn glob_at(p: &[u8], n: &[u8]) -> bool {
    match p {
        [] => n.is_empty(),
        [b'*', b'*', rest @ ..] => (0..=n.len()).any(|i| glob_at(rest, &n[i..])),
        [b'*', rest @ ..] => {
            let seg = n.iter().position(|&c| c == b'/').unwrap_or(n.len());
            (0..=seg).any(|i| glob_at(rest, &n[i..]))
        }
        [b'?', rest @ ..] => matches!(n, [c, tail @ ..] if *c != b'/' && glob_at(rest, tail)),
        [c, rest @ ..] => matches!(n, [d, tail @ ..] if c == d && glob_at(rest, tail)),
    }
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
        for (p, n, want) in cases {
            assert_eq!(glob(p, n), want, "{p} ~ {n}");
        }
    }

    const HASH: &str = "$pbkdf2-sha256$i=1$MDEyMzQ1Njc4OWFiY2RlZg$\
                        AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

    fn policy(extra: &str) -> Result<Policy, String> {
        let text = format!(
            "{extra}\n[users.alice]\npassword = \"{HASH}\"\ngroups = [\"dev\"]\n\
             [users.bob]\npassword = \"{HASH}\"\n[users.ci]\npassword = \"{HASH}\"\nread_only = true\n"
        );
        let file: PolicyFile = toml::from_str(&text).map_err(|e| e.to_string())?;
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
        let file: PolicyFile = toml::from_str("[users.x]\npassword = \"plain text\"\n").unwrap();
        assert!(Policy::from_file(&file).is_err());
    }
}
