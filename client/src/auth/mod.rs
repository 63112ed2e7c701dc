//! Credentials and tokens: where a username and password come from (flags, environment,
//! docker and podman auth files, credential helpers), the `WWW-Authenticate` challenge (read
//! by the core's parser), and the Bearer token cache per host and scope. The token flow itself is the transport's.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

mod credential;
mod files;
mod keychain;
mod tokens;

pub use berth::auth::Challenge;
pub use credential::{Credential, Secret};
pub use keychain::Keychain;
pub(crate) use tokens::{Scheme, TokenReply, Tokens};

/// `repository:NAME:pull` or `repository:NAME:pull,push`.
pub fn scope(name: &str, push: bool) -> String {
    if push {
        format!("repository:{name}:pull,push")
    } else {
        format!("repository:{name}:pull")
    }
}

/// Merge scopes: one entry per resource, actions united, sorted (a stable cache key).
pub fn merge_scopes<'a>(scopes: impl IntoIterator<Item = &'a String>) -> Vec<String> {
    let mut by_resource: Vec<(String, Vec<String>)> = Vec::new();
    for s in scopes {
        let (resource, actions) = match s.rsplit_once(':') {
            Some((r, a)) => (r.to_owned(), a),
            None => (s.clone(), ""),
        };
        let entry = match by_resource.iter_mut().find(|(r, _)| *r == resource) {
            Some(e) => e,
            None => {
                by_resource.push((resource, Vec::new()));
                by_resource.last_mut().expect("just pushed")
            }
        };
        for a in actions.split(',').filter(|a| !a.is_empty()) {
            if !entry.1.iter().any(|x| x == a) {
                entry.1.push(a.to_owned());
            }
        }
    }
    let mut out: Vec<String> = by_resource
        .into_iter()
        .map(|(r, mut a)| {
            a.sort();
            format!("{r}:{}", a.join(","))
        })
        .collect();
    out.sort();
    out
}

pub(crate) fn basic_header(username: &str, password: &str) -> String {
    format!("Basic {}", B64.encode(format!("{username}:{password}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_merge() {
        let s = [
            "repository:b:pull".to_owned(),
            "repository:a:push".to_owned(),
            "repository:a:pull".to_owned(),
            "repository:a:pull".to_owned(),
        ];
        assert_eq!(
            merge_scopes(&s),
            vec!["repository:a:pull,push", "repository:b:pull"]
        );
    }
}
