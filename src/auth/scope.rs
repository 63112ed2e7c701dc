//! Actions, scopes (`repository:NAME:pull,push`, `registry:catalog:*`) and what a request needs.

use std::fmt;

use http::Method;

use crate::names::RepoName;
use crate::route::{Ext, Route};

/// A set of repository actions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Actions(u8);

impl Actions {
    pub const NONE: Actions = Actions(0);
    pub const PULL: Actions = Actions(1);
    pub const PUSH: Actions = Actions(2);
    pub const DELETE: Actions = Actions(4);
    pub const ALL: Actions = Actions(7);

    pub fn contains(self, other: Actions) -> bool {
        self.0 & other.0 == other.0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn union(self, other: Actions) -> Actions {
        Actions(self.0 | other.0)
    }

    pub fn intersect(self, other: Actions) -> Actions {
        Actions(self.0 & other.0)
    }

    /// One action by name; `*` is all of them. Unknown names are `None`.
    pub fn parse_one(s: &str) -> Option<Actions> {
        match s.trim() {
            "pull" => Some(Actions::PULL),
            "push" => Some(Actions::PUSH),
            "delete" => Some(Actions::DELETE),
            "*" => Some(Actions::ALL),
            _ => None,
        }
    }

    /// A comma-separated list; unknown names are ignored (a client may ask for more than we
    /// know of, and gets what we know).
    pub fn parse_list(s: &str) -> Actions {
        s.split(',')
            .filter_map(Actions::parse_one)
            .fold(Actions::NONE, Actions::union)
    }

    pub fn names(self) -> Vec<&'static str> {
        [
            (Actions::PULL, "pull"),
            (Actions::PUSH, "push"),
            (Actions::DELETE, "delete"),
        ]
        .into_iter()
        .filter(|(a, _)| self.contains(*a))
        .map(|(_, n)| n)
        .collect()
    }
}

impl fmt::Display for Actions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.names().join(","))
    }
}

/// What one request asks of its caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Need {
    /// Nothing: the request names no resource (an unknown path answers 404 for everyone).
    Nothing,
    /// `/v2/`: any credentials the registry accepts, anonymous tokens included.
    Login,
    /// `/v2/_catalog`.
    Catalog,
    /// Anyone, signed in or not: the answer holds only what the caller may pull
    /// (`/v2/_berth/repositories`).
    Browse,
    Repo {
        name: RepoName,
        actions: Actions,
    },
}

impl Need {
    /// The scope a Bearer challenge names for this need, if any.
    pub fn scope(&self) -> Option<String> {
        match self {
            Need::Catalog => Some("registry:catalog:*".into()),
            Need::Repo { name, actions } => Some(format!("repository:{name}:{actions}")),
            _ => None,
        }
    }
}

/// Exactly the access a route asks for. An invalid name needs nothing: the endpoint answers
/// NAME_INVALID whatever the caller may do, which reveals nothing.
pub fn need(route: Route<'_>, method: &Method) -> Need {
    let (name, actions) = match route {
        Route::Unknown => return Need::Nothing,
        Route::Base => return Need::Login,
        Route::Catalog | Route::Berth(Ext::Gc) => return Need::Catalog,
        Route::Berth(Ext::Repositories) => return Need::Browse,
        Route::Berth(Ext::Summary { name } | Ext::Tags { name }) => (name, Actions::PULL),
        Route::Tags { name } | Route::Referrers { name, .. } => (name, Actions::PULL),
        Route::Manifest { name, .. } | Route::Blob { name, .. } => {
            // Methods the endpoint refuses with 405 need pull, so outsiders learn nothing.
            let a = match *method {
                Method::PUT => Actions::PUSH,
                Method::DELETE => Actions::DELETE,
                _ => Actions::PULL,
            };
            (name, a)
        }
        // Reading an upload's status, or cancelling it, is part of pushing.
        Route::Uploads { name } | Route::Upload { name, .. } => (name, Actions::PUSH),
    };
    match name.parse::<RepoName>() {
        Ok(name) => Need::Repo { name, actions },
        Err(()) => Need::Nothing,
    }
}

/// One `scope` parameter of a token request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    Repo(RepoName, Actions),
    Catalog,
}

/// `repository:NAME:ACTIONS` (a resource class such as `repository(plugin)` is accepted and
/// ignored) or `registry:catalog:*`. Anything else is `None`: ignored, not an error.
pub fn parse_scope(s: &str) -> Option<Scope> {
    let (kind, rest) = s.split_once(':')?;
    let (name, actions) = rest.rsplit_once(':')?;
    let kind = kind.split_once('(').map_or(kind, |(k, _)| k);
    match kind {
        "repository" => Some(Scope::Repo(
            name.parse().ok()?,
            Actions::parse_list(actions),
        )),
        "registry" if name == "catalog" => Some(Scope::Catalog),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(name: &str, actions: Actions) -> Need {
        Need::Repo {
            name: name.parse().unwrap(),
            actions,
        }
    }

    #[test]
    fn needs() {
        use Method as M;
        let cases = [
            ("/v2/", M::GET, Need::Login),
            ("/v2/_catalog", M::GET, Need::Catalog),
            ("/v2/a/tags/list", M::GET, repo("a", Actions::PULL)),
            ("/v2/a/b/manifests/x", M::HEAD, repo("a/b", Actions::PULL)),
            ("/v2/a/manifests/x", M::PUT, repo("a", Actions::PUSH)),
            ("/v2/a/manifests/x", M::DELETE, repo("a", Actions::DELETE)),
            ("/v2/a/manifests/x", M::POST, repo("a", Actions::PULL)),
            ("/v2/a/blobs/sha256:0", M::GET, repo("a", Actions::PULL)),
            (
                "/v2/a/blobs/sha256:0",
                M::DELETE,
                repo("a", Actions::DELETE),
            ),
            ("/v2/a/blobs/uploads/", M::POST, repo("a", Actions::PUSH)),
            ("/v2/a/blobs/uploads/x", M::GET, repo("a", Actions::PUSH)),
            ("/v2/a/blobs/uploads/x", M::PATCH, repo("a", Actions::PUSH)),
            ("/v2/a/blobs/uploads/x", M::DELETE, repo("a", Actions::PUSH)),
            ("/v2/a/referrers/sha256:0", M::GET, repo("a", Actions::PULL)),
            ("/v2/_berth/repositories", M::GET, Need::Browse),
            ("/v2/_berth/gc", M::GET, Need::Catalog),
            ("/v2/a/_berth/tags", M::GET, repo("a", Actions::PULL)),
            ("/v2/a/_berth/summary", M::DELETE, repo("a", Actions::PULL)),
            ("/v2/A/manifests/x", M::GET, Need::Nothing),
            ("/nowhere", M::GET, Need::Nothing),
        ];
        for (path, method, want) in cases {
            assert_eq!(
                need(crate::route::parse(path), &method),
                want,
                "{method} {path}"
            );
        }
        assert_eq!(
            repo("a/b", Actions::PULL.union(Actions::PUSH))
                .scope()
                .unwrap(),
            "repository:a/b:pull,push"
        );
    }

    #[test]
    fn scopes() {
        let r = |n: &str, a| Some(Scope::Repo(n.parse().unwrap(), a));
        let pp = Actions::PULL.union(Actions::PUSH);
        assert_eq!(parse_scope("repository:a/b:pull,push"), r("a/b", pp));
        assert_eq!(parse_scope("repository:a:*"), r("a", Actions::ALL));
        assert_eq!(
            parse_scope("repository(plugin):a:pull"),
            r("a", Actions::PULL)
        );
        assert_eq!(parse_scope("repository:a:pull,fly"), r("a", Actions::PULL));
        assert_eq!(parse_scope("repository:a:"), r("a", Actions::NONE));
        assert_eq!(parse_scope("registry:catalog:*"), Some(Scope::Catalog));
        assert_eq!(parse_scope("repository:Bad:pull"), None);
        assert_eq!(parse_scope("repository:a"), None);
        assert_eq!(parse_scope("garbage"), None);
        assert_eq!(parse_scope("registry:other:*"), None);
    }
}
